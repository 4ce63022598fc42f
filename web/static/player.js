// The recording player: every participant's video on one timeline, one play/pause and one slider for all. The
// first video leads; the others follow its clock (re-synced when they drift more than a tenth of a second), so
// they play as they were recorded. `SyncedPlayer(root, onUse)` is shared: the record's player below, and the QA
// review screen (qa.js), which also asks for the current moment to pin it and seeks to notes and chat lines.
(function () {
  "use strict";

  // m:ss, or h:mm:ss past an hour.
  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = String(s % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function SyncedPlayer(root, onUse) {
    var videos = Array.prototype.slice.call(root.querySelectorAll("video"));
    var lead = videos[0];
    var button = root.querySelector("[data-testid=play]");
    var slider = root.querySelector("[data-testid=timeline]");
    var position = root.querySelector("[data-testid=position]");
    var dragging = false;
    var self = this;
    var used = function () { if (onUse) { onUse(self); } };

    function show(seconds) {
      position.textContent = clock(seconds);
      if (!dragging) { slider.value = String(Math.round(seconds * 1000)); }
    }
    function playing() {
      return videos.some(function (video) { return !video.paused && !video.ended; });
    }
    function label() {
      button.textContent = playing() ? button.getAttribute("data-pause") : button.getAttribute("data-play");
    }
    this.current = function () { return lead ? lead.currentTime : 0; };
    this.seek = function (seconds) {
      videos.forEach(function (video) {
        // A participant's file may end earlier (they left first): it stays at its end.
        video.currentTime = Math.min(seconds, isFinite(video.duration) ? video.duration : seconds);
      });
      show(seconds);
    };
    this.toggle = function () {
      used();
      if (playing()) {
        videos.forEach(function (video) { video.pause(); });
        return;
      }
      var at = self.current();
      videos.forEach(function (video) {
        if (Math.abs(video.currentTime - at) > 0.1) { video.currentTime = at; }
        var started = video.play();
        if (started && started.catch) { started.catch(function () { /* this file ended before the others */ }); }
      });
    };
    button.addEventListener("click", this.toggle);
    videos.forEach(function (video) {
      video.addEventListener("play", label);
      video.addEventListener("pause", label);
      video.addEventListener("ended", label);
    });
    if (lead) {
      lead.addEventListener("timeupdate", function () {
        show(lead.currentTime);
        videos.slice(1).forEach(function (video) {
          if (!video.paused && !video.ended && Math.abs(video.currentTime - lead.currentTime) > 0.1) {
            video.currentTime = lead.currentTime;
          }
        });
      });
    }
    slider.addEventListener("input", function () { dragging = true; position.textContent = clock(slider.value / 1000); });
    slider.addEventListener("change", function () { dragging = false; used(); self.seek(Number(slider.value) / 1000); });
    show(0);
  }

  window.SyncedPlayer = SyncedPlayer;
  window.SyncedPlayer.clock = clock;

  // The record's player page: one player; its chat lines seek (their times in milliseconds).
  var root = document.querySelector("[data-testid=player]");
  if (!root) { return; }
  var player = new SyncedPlayer(root);
  root.querySelectorAll("[data-seek]").forEach(function (link) {
    link.addEventListener("click", function () { player.seek(Number(link.getAttribute("data-seek")) / 1000); });
  });
}());
