// The recording player: every participant's video on one timeline. The first video leads; the others follow
// its clock (re-synced when they drift more than a tenth of a second), so they play as they were recorded.
(function () {
  "use strict";
  var root = document.querySelector("[data-testid=player]");
  if (!root) return;
  var videos = Array.prototype.slice.call(root.querySelectorAll("video"));
  var lead = videos[0];
  var button = root.querySelector("[data-testid=play]");
  var slider = root.querySelector("[data-testid=timeline]");
  var position = root.querySelector("[data-testid=position]");
  var duration = Number(root.getAttribute("data-duration-ms")) / 1000;
  var dragging = false;

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function seek(seconds) {
    videos.forEach(function (video) {
      // A participant's file may end earlier (they left first): it stays at its end.
      video.currentTime = Math.min(seconds, isFinite(video.duration) ? video.duration : seconds);
    });
    show(seconds);
  }

  function show(seconds) {
    position.textContent = clock(seconds);
    if (!dragging) slider.value = String(Math.round(seconds * 1000));
  }

  function playing() {
    return videos.some(function (video) { return !video.paused && !video.ended; });
  }

  function label() {
    button.textContent = playing() ? button.getAttribute("data-pause") : button.getAttribute("data-play");
  }

  button.addEventListener("click", function () {
    if (playing()) {
      videos.forEach(function (video) { video.pause(); });
    } else {
      var at = lead ? lead.currentTime : 0;
      videos.forEach(function (video) {
        if (Math.abs(video.currentTime - at) > 0.1) video.currentTime = at;
        var started = video.play();
        if (started && started.catch) started.catch(function () { /* the file ended before the others */ });
      });
    }
  });

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
  slider.addEventListener("change", function () { dragging = false; seek(Number(slider.value) / 1000); });

  root.querySelectorAll("[data-seek]").forEach(function (link) {
    link.addEventListener("click", function () { seek(Number(link.getAttribute("data-seek")) / 1000); });
  });
  show(0);
  if (!isFinite(duration)) return;
}());
