// The QA review screen. Two jobs, both enhancements of a page that works without scripts:
// 1. The player (player.js's SyncedPlayer, as the record's): both participants on one timeline; here it also answers
//    "what is the current moment" for pinning, and seeks when a note's or a chat line's time is clicked.
// 2. Autosave: about a second after each change the whole checklist goes to PUT /api/v1/qa/reviews/{id}/draft with
//    the revision it was based on (If-Match); a 412 means another window saved since, so saving stops and says so.
(function () {
  "use strict";

  var clock = window.SyncedPlayer.clock;  // player.js, loaded before this file

  // The same reading as the server's (web/qa_pages/review.py `parse_clock`): m:ss, h:mm:ss or seconds.
  function parseClock(text) {
    text = String(text || "").trim();
    if (!text) { return null; }
    var match = /^(?:(\d+):)?(\d{1,3}):(\d{1,2}(?:\.\d+)?)$/.exec(text);
    if (match) { return Number(match[1] || 0) * 3600 + Number(match[2]) * 60 + Number(match[3]); }
    var value = Number(text);
    return isFinite(value) ? value : NaN;
  }

  // --- The player ----------------------------------------------------------------------------------------------
  var players = [];
  var active = null;  // the player last used: pins and seeks go to it

  document.querySelectorAll("[data-qa-player]").forEach(function (root) {
    players.push(new window.SyncedPlayer(root, function (player) { active = player; }));
  });
  active = players[0] || null;

  function seek(seconds) {
    if (active && seconds !== null && !isNaN(seconds)) { active.seek(seconds); }
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-seek],[data-seek-field],[data-pin]") : null;
    if (!target) { return; }
    if (target.hasAttribute("data-seek")) {
      seek(Number(target.getAttribute("data-seek")));
    } else if (target.hasAttribute("data-seek-field")) {
      var field = document.querySelector("[name='" + target.getAttribute("data-seek-field") + "']");
      if (field) { seek(parseClock(field.value)); }
    } else if (active) {
      var pinned = document.querySelector("[name='" + target.getAttribute("data-pin") + "']");
      if (pinned) {
        pinned.value = clock(active.current());
        pinned.dispatchEvent(new Event("input", { bubbles: true }));
      }
    }
  });

  if (players.length) {  // the buttons that need a player are offered only when there is one
    document.querySelectorAll("[data-pin],[data-seek-field],[data-add-note]").forEach(function (node) {
      node.hidden = false;
    });
  }

  // --- The checklist -------------------------------------------------------------------------------------------
  var form = document.querySelector("form[data-autosave]");
  if (!form) { return; }
  var url = form.getAttribute("data-autosave");
  var csrf = form.getAttribute("data-csrf");
  var revision = form.querySelector("[data-revision]");
  var statusNode = form.querySelector("[data-autosave-status]");
  var notes = form.querySelector("[data-notes]");
  var addNote = form.querySelector("[data-add-note]");
  var DELAY = 1000;
  var timer = null, saving = false, again = false, stopped = false, submitter = null;

  function say(state, extra) {
    statusNode.textContent = form.getAttribute("data-" + state + "-text") + (extra ? " " + extra : "");
    statusNode.setAttribute("data-state", state);
  }

  function value(name) {
    var field = form.elements.namedItem(name);
    return field ? String(field.value || "").trim() : "";
  }

  function noteRows() {
    var rows = [];
    for (var index = 0; form.elements.namedItem("note-" + index + "-at") || form.elements.namedItem("note-" + index + "-text"); index++) {
      rows.push(index);
    }
    return rows;
  }

  // The whole draft, read as the server reads the posted form; null when a moment is not a time yet.
  function collect() {
    var answers = {}, draft = { answers: answers, notes: [], summary: value("summary") }, valid = true;
    form.querySelectorAll("[data-item]").forEach(function (item) {
      var key = item.getAttribute("data-item");
      var checked = item.querySelector("input[type=radio]:checked");
      var comment = value("comment-" + key);
      var at = parseClock(value("at-" + key));
      if (at !== null && isNaN(at)) { valid = false; }
      if (checked || comment || at !== null) {
        answers[key] = { answer: checked ? checked.value : null, comment: comment, at: isNaN(at) ? null : at };
      }
    });
    noteRows().forEach(function (index) {
      var text = value("note-" + index + "-text"), at = parseClock(value("note-" + index + "-at"));
      if (at !== null && isNaN(at)) { valid = false; }
      if (text && at !== null && !isNaN(at)) { draft.notes.push({ at: at, text: text }); }  // half-typed rows wait
    });
    return valid ? draft : null;
  }

  function put(draft, retried) {
    var headers = { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf,
                    "If-Match": '"' + revision.value + '"' };
    return fetch(url, { method: "PUT", credentials: "same-origin", cache: "no-store", headers: headers,
                        body: JSON.stringify(draft) })
      .then(function (response) {
        if (response.status === 401 && !retried) {
          // The access cookie lasts minutes; any page renews it from the refresh cookie. Then try once more.
          return fetch("/", { credentials: "same-origin", headers: { "Accept": "text/html" } })
            .then(function () { return put(draft, true); });
        }
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.ok) {
            revision.value = body.revision;
            var now = new Date();
            say("saved", String(now.getHours()).padStart(2, "0") + ":" + String(now.getMinutes()).padStart(2, "0"));
          } else if (response.status === 412 || response.status === 409) {
            stopped = true;  // saving more would overwrite another window's work (or a submitted review)
            say("conflict");
          } else {
            say("refused");
          }
        });
      });
  }

  function save() {
    timer = null;
    if (stopped && !submitter) { return; }
    if (saving) { again = true; return; }
    var draft = collect();
    if (!draft) { say("refused"); return; }
    saving = true;
    say("saving");
    put(draft, false).catch(function () { say("failed"); }).then(function () {
      saving = false;
      if (submitter) {  // the expert pressed a button while this save was under way: now post the form
        var button = submitter;
        submitter = null;
        stopped = true;
        if (form.requestSubmit) { form.requestSubmit(button); } else { button.click(); }
        return;
      }
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
  form.addEventListener("submit", function (event) {
    if (timer) { clearTimeout(timer); timer = null; }
    if (saving) {  // the post must carry the revision this save is about to return
      event.preventDefault();
      submitter = event.submitter || form.querySelector("[data-testid=submit]");
      return;
    }
    stopped = true;  // the posted form carries the newest of everything
  });

  if (addNote) {
    addNote.addEventListener("click", function () {
      var index = noteRows().length;
      var at = active ? clock(active.current()) : "";
      var row = document.createElement("li");
      row.className = "qa-note";
      row.setAttribute("data-testid", "note");
      var atLabel = form.querySelector("[data-notes] label").cloneNode(true);
      var textLabel = form.querySelector("[data-notes] label:last-of-type").cloneNode(true);
      var atInput = atLabel.querySelector("input"), textInput = textLabel.querySelector("input");
      atInput.name = "note-" + index + "-at";
      atInput.value = at;
      atInput.setAttribute("data-testid", "note-at");
      textInput.name = "note-" + index + "-text";
      textInput.value = "";
      textInput.setAttribute("data-testid", "note-text");
      var go = document.createElement("button");
      go.type = "button";
      go.className = "link";
      go.setAttribute("data-seek-field", atInput.name);
      go.textContent = at;
      row.appendChild(go);
      row.appendChild(atLabel);
      row.appendChild(textLabel);
      notes.appendChild(row);
      textInput.focus();
    });
  }
}());
