// Staff pages: live waiting room, adding weekly-hours rows, confirming cancellations.
// Everything here is an enhancement: each page works without scripts (forms post, a Refresh link).
(function () {
  "use strict";

  // --- the live waiting room ---------------------------------------------------------------------
  // The server-sent stream only says that something changed; the list itself comes from the server,
  // already rendered in the page's language, so the page after a reload and after an event is the same.
  function liveQueue(queue) {
    var listUrl = queue.getAttribute("data-list");
    var eventsUrl = queue.getAttribute("data-events");
    var state = document.getElementById("live-state");
    var announce = document.getElementById("queue-announce");
    var loading = null;
    var again = false;
    var source = null;
    var retry = 2000;

    function setState(live) {
      if (!state) { return; }
      state.setAttribute("data-state", live ? "live" : "offline");
      state.textContent = state.getAttribute(live ? "data-live" : "data-offline");
    }

    function reload() {
      if (loading) { again = true; return loading; }
      loading = fetch(listUrl, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelector("[data-fragment='queue']");
          if (!fresh) { throw new Error("signed out"); }  // e.g. the login page after the session ended
          var focused = document.activeElement;
          var focusId = focused && queue.contains(focused) ? focused.getAttribute("data-id") : null;
          var old = queue.querySelector("[data-fragment='queue']");
          var before = old ? old.getAttribute("data-summary") : "";
          var node = document.importNode(fresh, true);
          if (old) { old.replaceWith(node); } else { queue.appendChild(node); }
          if (focusId) {  // keep keyboard users where they were
            var same = queue.querySelector("button[data-id='" + focusId + "']");
            if (same) { same.focus(); }
          }
          var after = node.getAttribute("data-summary");
          if (announce && after !== before) { announce.textContent = after; }
        })
        .catch(function () { setState(false); })
        .then(function () {
          loading = null;
          if (again) { again = false; reload(); }
        });
      return loading;
    }

    function connect() {
      if (!window.EventSource) { return; }
      source = new EventSource(eventsUrl, { withCredentials: true });
      source.addEventListener("open", function () { retry = 2000; setState(true); });
      source.onmessage = reload;
      ["ready", "checked_in", "admit", "finish", "cancel", "reschedule", "refused", "no_show",
       "consent_signed", "consent_withdrawn"].forEach(
        function (name) { source.addEventListener(name, reload); });
      source.addEventListener("error", function () {
        setState(false);
        if (source.readyState === EventSource.CLOSED) {
          // Refused (say, the access cookie expired): loading the list renews the session, then reconnect.
          source = null;
          reload().then(function () { window.setTimeout(connect, retry); });
          retry = Math.min(retry * 2, 60000);
        }
      });
    }

    connect();
    window.setInterval(reload, 60000);  // the minutes waited keep counting between events
  }

  // --- weekly hours: add a row -------------------------------------------------------------------
  function hoursEditor(form) {
    var body = form.querySelector("#hours-rows");
    var template = document.getElementById("hours-row-template");
    var add = form.querySelector("[data-add-row]");
    if (!body || !template || !add) { return; }
    add.hidden = false;
    add.addEventListener("click", function () {
      var next = 0;
      body.querySelectorAll("[name^='rows-']").forEach(function (field) {
        var index = parseInt(field.name.split("-")[1], 10);
        if (index >= next) { next = index + 1; }
      });
      var row = document.importNode(template.content, true);
      row.querySelectorAll("[name]").forEach(function (field) {
        field.name = field.name.replace("__index__", String(next));
      });
      body.appendChild(row);
      var first = body.querySelector("[name='rows-" + next + "-weekday']");
      if (first) { first.focus(); }
    });
    body.addEventListener("change", function (event) {
      var box = event.target;
      if (box.hasAttribute && box.hasAttribute("data-remove")) {
        box.closest("tr").classList.toggle("row-removed", box.checked);
      }
    });
    body.querySelectorAll("[data-remove]").forEach(function (box) {
      box.closest("tr").classList.toggle("row-removed", box.checked);
    });
  }

  // --- confirm before a change the patient is told about ----------------------------------------
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function start() {
    var queue = document.getElementById("queue");
    if (queue && queue.hasAttribute("data-events")) { liveQueue(queue); }
    var hours = document.querySelector("form[data-testid='hours-form']");
    if (hours) { hoursEditor(hours); }
    confirmations();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
