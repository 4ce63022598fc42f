/* The patient pages' small helpers. Every page works without this file; it only makes them easier:
   live search in the reasons list, a character counter, a confirmation before cancelling, the device check
   in the waiting room (camera preview, microphone level, a test sound) and the waiting room's status.
   Loaded from /static (the Content-Security-Policy allows no inline scripts). */
(function () {
  "use strict";

  function all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function normal(text) {
    return (text || "").toLocaleLowerCase().replace(/ё/g, "е");
  }

  /* --- the reasons list: filter as the patient types --------------------------------------------------- */
  function conditionSearch(input) {
    var target = document.querySelector(input.getAttribute("data-filter"));
    var empty = document.querySelector("[data-empty-message]");
    if (!target) return;
    input.addEventListener("input", function () {
      var needle = normal(input.value.trim());
      var any = false;
      all("[data-group]", target).forEach(function (group) {
        var shown = 0;
        all("li[data-search]", group).forEach(function (item) {
          var hit = !needle || normal(item.getAttribute("data-search")).indexOf(needle) !== -1;
          item.hidden = !hit;
          if (hit) shown += 1;
        });
        group.hidden = shown === 0;
        if (shown) any = true;
      });
      if (empty) empty.hidden = any;
    });
  }

  /* --- step 2: the time links carry the kind chosen above them ------------------------------------------ */
  function kindLinks() {
    all("input[data-kind]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (!radio.checked) return;
        all("a[data-kind-link]").forEach(function (anchor) {
          var url = new URL(anchor.getAttribute("href"), window.location.href);
          url.searchParams.set("kind", radio.value);
          anchor.setAttribute("href", url.pathname + url.search);
        });
      });
    });
  }

  /* --- "characters left" under the complaint ------------------------------------------------------------ */
  function counters() {
    all("textarea[data-counter]").forEach(function (area) {
      var out = document.querySelector(area.getAttribute("data-counter"));
      var max = Number(area.getAttribute("maxlength"));
      if (!out || !max) return;
      var update = function () {
        var left = Math.max(0, max - area.value.length);
        out.textContent = (out.getAttribute("data-template") || "%(count)s").replace("%(count)s", String(left));
      };
      area.addEventListener("input", update);
      update();
    });
  }

  /* --- forms: confirm where asked, and never send twice ------------------------------------------------- */
  function forms() {
    all("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    all("form[method=post]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (event.defaultPrevented) return;
        if (form.getAttribute("data-sent")) {
          event.preventDefault();
          return;
        }
        form.setAttribute("data-sent", "1");
      });
    });
    window.addEventListener("pageshow", function () {
      all("form[data-sent]").forEach(function (form) { form.removeAttribute("data-sent"); });
    });
    var problem = document.querySelector("[data-focus-first]");  // what went wrong, read out first
    if (problem) problem.focus();
  }

  /* --- the device check ---------------------------------------------------------------------------------- */
  function shortBrowser(agent) {
    var names = [
      [/YaBrowser\/(\d+)/, "Yandex Browser"], [/Edg(?:e|A|iOS)?\/(\d+)/, "Edge"], [/OPR\/(\d+)/, "Opera"],
      [/SamsungBrowser\/(\d+)/, "Samsung Internet"], [/(?:Firefox|FxiOS)\/(\d+)/, "Firefox"],
      [/CriOS\/(\d+)/, "Chrome"], [/Chrome\/(\d+)/, "Chrome"], [/Version\/(\d+)[\d.]*.*Safari/, "Safari"]
    ];
    var name = "Other browser";
    for (var i = 0; i < names.length; i += 1) {
      var found = agent.match(names[i][0]);
      if (found) { name = names[i][1] + " " + found[1]; break; }
    }
    var system = /Android/.test(agent) ? "Android" : /iPhone|iPad|iPod/.test(agent) ? "iOS"
      : /Windows/.test(agent) ? "Windows" : /CrOS/.test(agent) ? "ChromeOS" : /Mac OS X/.test(agent) ? "macOS"
      : /Linux/.test(agent) ? "Linux" : "";
    return (system ? name + " (" + system + ")" : name).slice(0, 200);
  }

  function deviceCheck(root) {
    var form = root.closest("form");
    var problems = {};
    var stream = null;
    var audio = null;
    var micHeard = false;
    var started = false;
    var speakerAnswered = false;
    var preview = root.querySelector("video[data-preview]");
    var bar = root.querySelector("[data-meter]");
    var heard = root.querySelector("[data-heard]");

    function field(name) { return root.querySelector('[data-field="' + name + '"]'); }
    function problem(tag, on) {
      if (on) problems[tag] = true; else delete problems[tag];
      field("problems").value = Object.keys(problems).join(",");
    }
    function state(group, value) {
      all('[data-state^="' + group + ':"]', root).forEach(function (element) {
        element.hidden = element.getAttribute("data-state") !== group + ":" + value;
      });
    }
    function audioContext() {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) { problem("no_web_audio", true); return null; }
      if (!audio) audio = new Context();
      if (audio.state === "suspended") audio.resume();
      return audio;
    }
    function stop() {
      if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
    }

    function meter(source) {
      var context = audioContext();
      if (!context || !bar) return;
      var analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(source).connect(analyser);
      var samples = new Uint8Array(analyser.fftSize);
      (function tick() {
        if (stream !== source) return;
        analyser.getByteTimeDomainData(samples);
        var sum = 0;
        for (var i = 0; i < samples.length; i += 1) {
          var x = (samples[i] - 128) / 128;
          sum += x * x;
        }
        var level = Math.min(1, Math.sqrt(sum / samples.length) * 5);
        bar.style.width = Math.round(level * 100) + "%";
        if (level > 0.12 && !micHeard) {
          micHeard = true;
          state("microphone", "ok");
        }
        window.requestAnimationFrame(tick);
      })();
    }

    function partial() {
      // One device may be missing or busy: ask for each alone and keep what works.
      var tracks = [];
      var ask = function (constraints) {
        return navigator.mediaDevices.getUserMedia(constraints).then(function (got) {
          tracks = tracks.concat(got.getTracks());
        }, function (error) {
          if (error && error.name === "NotAllowedError") { problem("permission_denied", true); state("help", "denied"); }
        });
      };
      return ask({ audio: true }).then(function () { return ask({ video: true }); }).then(function () {
        return tracks.length ? new MediaStream(tracks) : null;
      });
    }

    function useStream(got) {
      stop();
      stream = got;
      var camera = got && got.getVideoTracks().length > 0;
      var microphone = got && got.getAudioTracks().length > 0;
      field("camera").value = camera ? "true" : "false";
      field("microphone").value = microphone ? "true" : "false";
      problem("no_camera", !camera);
      problem("no_microphone", !microphone);
      state("camera", camera ? "ok" : "fail");
      state("microphone", microphone ? (micHeard ? "ok" : "quiet") : "fail");
      if (camera && preview) {
        preview.srcObject = got;
        var playing = preview.play();
        if (playing && playing.catch) playing.catch(function () {});
      }
      if (microphone) meter(got);
      if (!camera && !microphone && !problems.permission_denied) state("help", "missing");
    }

    function start() {
      started = true;
      problem("devices_not_tested", false);
      problem("permission_denied", false);
      state("help", "none");
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        problem("no_media_devices", true);
        state("help", "unsupported");
        state("camera", "fail");
        state("microphone", "fail");
        return;
      }
      audioContext(); // created on the button press, so the browser lets it play
      navigator.mediaDevices.getUserMedia({ video: true, audio: true }).then(useStream, function (error) {
        var name = error && error.name;
        if (name === "NotAllowedError" || name === "SecurityError") {
          problem("permission_denied", true);
          state("help", "denied");
          useStream(null);
          return;
        }
        problem("media_error", name !== "NotFoundError" && name !== "OverconstrainedError" && name !== "NotReadableError");
        partial().then(useStream);
      });
    }

    function playTone() {
      var context = audioContext();
      if (!context) return;
      var oscillator = context.createOscillator();
      var gain = context.createGain();
      var now = context.currentTime;
      oscillator.type = "sine";
      oscillator.frequency.value = 660;
      gain.gain.setValueAtTime(0.0001, now);
      gain.gain.exponentialRampToValueAtTime(0.35, now + 0.05);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + 1.2);
      oscillator.connect(gain);
      gain.connect(context.destination);
      oscillator.start(now);
      oscillator.stop(now + 1.25);
      if (heard) heard.hidden = false;
    }

    function answerSound(yes) {
      speakerAnswered = true;
      field("speaker").value = yes ? "true" : "false";
      problem("speaker_not_heard", !yes);
      problem("speaker_not_tested", false);
      state("speaker", yes ? "ok" : "fail");
    }

    // Scripts run: the check replaces the "no JavaScript" note.
    all("[data-no-js]", root).forEach(function (element) { element.hidden = true; });
    all("[data-js-only]", root).forEach(function (element) { element.hidden = false; });
    field("browser").value = shortBrowser(navigator.userAgent || "");
    problem("no_js", false);
    problem("devices_not_tested", true);

    root.addEventListener("click", function (event) {
      var button = event.target.closest("[data-action]");
      if (!button) return;
      var action = button.getAttribute("data-action");
      if (action === "start-devices") start();
      else if (action === "play-tone") playTone();
      else if (action === "heard-yes") answerSound(true);
      else if (action === "heard-no") answerSound(false);
    });
    if (form) {
      form.addEventListener("submit", function () {
        if (!speakerAnswered) problem("speaker_not_tested", true);
        problem("microphone_silent", started && field("microphone").value === "true" && !micHeard);
      });
    }
    window.addEventListener("pagehide", stop);
  }

  /* --- the waiting room: ask for the status every 5 seconds ---------------------------------------------- */
  function waitingRoom(root) {
    var url = root.getAttribute("data-status-url");
    var status = root.getAttribute("data-status");
    var waiting = root.querySelector("[data-waiting-state]");
    var admitted = root.querySelector("[data-admitted-state]");
    var offline = root.querySelector("[data-offline]");
    var line = root.querySelector("[data-status-line]");

    function showAdmitted() {
      if (waiting) waiting.hidden = true;
      if (admitted) {
        admitted.hidden = false;
        admitted.setAttribute("tabindex", "-1");
        admitted.focus();
        if (line) line.textContent = admitted.textContent.trim();
      }
    }
    function reloadOnce() {
      // The access cookie lasts minutes; loading the page renews it (or leads to the sign-in page).
      try {
        var last = Number(window.sessionStorage.getItem("waiting-reload") || 0);
        if (Date.now() - last < 60000) return false;
        window.sessionStorage.setItem("waiting-reload", String(Date.now()));
      } catch (blocked) {
        // Storage may be off (private browsing): reload anyway; the page itself polls no sooner than 5 s.
      }
      window.location.reload();
      return true;
    }
    function poll() {
      window.fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401 && reloadOnce()) return null;
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (body) {
          if (!body) return;
          if (offline) offline.hidden = true;
          if (body.status === status) return;
          status = body.status;
          if (status === "in_call") showAdmitted();
          else if (status !== "waiting") window.location.reload();
        })
        .catch(function () { if (offline) offline.hidden = false; })
        .then(function () { if (status === "waiting") window.setTimeout(poll, 5000); });
    }
    if (status === "waiting") window.setTimeout(poll, 5000);
  }

  function init() {
    all("input[data-filter]").forEach(conditionSearch);
    kindLinks();
    counters();
    forms();
    all("[data-device-check]").forEach(deviceCheck);
    all("[data-waiting]").forEach(waitingRoom);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
