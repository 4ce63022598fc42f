// The protocol form autosaves: a few seconds after the physician stops typing, the whole draft goes to
// PUT .../protocol/draft with the version it was based on (If-Match). An enhancement only: the form's own
// Save and Sign buttons post it without scripts.
(function () {
  "use strict";
  var form = document.querySelector("form[data-autosave]");
  if (!form) { return; }
  var url = form.getAttribute("data-autosave");
  var csrf = form.getAttribute("data-csrf");
  var repeat = form.getAttribute("data-repeat") === "true";
  var versionInput = form.querySelector("[data-version]");
  var statusNode = form.querySelector("[data-autosave-status]");
  var DELAY = 3000;
  var timer = null;
  var saving = false;
  var again = false;
  var stopped = false;  // a conflict: saving more would overwrite the other window's work
  var FIELDS = ["drug", "dose", "route", "frequency", "duration", "notes"];

  function say(key, extra) {
    statusNode.textContent = form.getAttribute("data-" + key + "-text") + (extra ? " " + extra : "");
    statusNode.setAttribute("data-state", key);
  }

  function value(name) {
    var field = form.elements.namedItem(name);
    return field ? String(field.value || "").trim() : "";
  }

  function checked(name) {
    var field = form.elements.namedItem(name);
    return !!(field && field.checked);
  }

  // The same reading of the form as the server's (web/staff_pages/protocol.py `_content`).
  function collect() {
    var draft = {
      complaints: value("complaints"), anamnesis: value("anamnesis"),
      reported_and_shown: value("reported_and_shown"), assessment: value("assessment"),
      follow_up: value("follow_up"),
      recommendations: { in_person_visit: checked("in_person_visit"), tests: checked("tests"),
                         tests_detail: value("tests_detail"), text: value("recommendations") },
      prescriptions: []
    };
    if (repeat) {
      draft.diagnosis = { icd10: value("diagnosis-icd10"), text: value("diagnosis-text") };
      for (var row = 0; form.elements.namedItem("rx-" + row + "-drug"); row++) {
        var item = {}, any = false;
        FIELDS.forEach(function (name) { item[name] = value("rx-" + row + "-" + name); any = any || !!item[name]; });
        if (any) { draft.prescriptions.push(item); }
      }
    }
    return draft;
  }

  function put(retried) {
    var headers = { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf };
    if (versionInput.value) { headers["If-Match"] = '"' + versionInput.value + '"'; }
    return fetch(url, { method: "PUT", credentials: "same-origin", cache: "no-store", headers: headers,
                        body: JSON.stringify(collect()) })
      .then(function (response) {
        if (response.status === 401 && !retried) {
          // The access cookie lasts minutes; any page renews it from the refresh cookie. Then try once more.
          return fetch("/", { credentials: "same-origin", headers: { "Accept": "text/html" } })
            .then(function () { return put(true); });
        }
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok) {
            versionInput.value = body.version;
            var now = new Date();
            say("saved", String(now.getHours()).padStart(2, "0") + ":" + String(now.getMinutes()).padStart(2, "0"));
          } else if (response.status === 412 || response.status === 428) {
            stopped = true;
            say("conflict");
          } else {
            say("refused", body.detail ? "(" + body.detail + ")" : "");
          }
        });
      });
  }

  function save() {
    timer = null;
    if (stopped) { return; }
    if (saving) { again = true; return; }
    saving = true;
    say("saving");
    put(false).catch(function () { say("failed"); }).then(function () {
      saving = false;
      if (again) { again = false; schedule(); }
    });
  }

  function schedule() {
    if (stopped) { return; }
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, DELAY);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  form.addEventListener("submit", function () {  // the posted form carries the newest version instead
    if (timer) { clearTimeout(timer); timer = null; }
    stopped = true;
  });
})();
