/* The call page's script: joins the consultation's call (docs/signaling.md) and keeps it going.

   One RTCPeerConnection to the server, which forwards the others' media. A call holds three at most (the
   physician, the patient, an invited guest), so the offer asks for two "slots" of audio and video from the start
   and nothing is renegotiated when someone comes or goes: which slot carries whom follows from the roles
   (SLOT_ROLES, as the server's media.peer.slot_index has it). Joining starts from the Join
   click, so the browser lets the other side's sound play. A dropped connection (network change, the server
   restarting, the media failing) is rejoined with a new ticket and a new peer connection, with backoff, for as
   long as the server keeps a place (its grace period); the camera and microphone stay open meanwhile.
   Every text comes translated from the page (data-call-texts); the script has no language of its own. */
(function () {
  "use strict";

  var root = document.querySelector("[data-call]");
  if (!root) return;

  var texts = JSON.parse(root.querySelector("[data-call-texts]").textContent);
  var role = root.getAttribute("data-role");
  var consultationId = root.getAttribute("data-consultation-id");
  var joinUrl = root.getAttribute("data-join-url");
  var csrf = root.getAttribute("data-csrf");

  function q(selector) {
    return root.querySelector(selector);
  }

  var ui = {
    join: q("[data-join]"), prejoin: q("[data-prejoin]"), controls: q("[data-controls]"),
    mute: q("[data-mute]"), camera: q("[data-camera]"), end: q("[data-end]"), leave: q("[data-leave]"),
    pause: q("[data-pause-recording]"),
    self: q("[data-self-video]"), stage: q(".stage"),
    recording: q("[data-recording]"), quality: q("[data-quality]"), banner: q("[data-banner]"),
    announce: q("[data-announce]"), chat: q("[data-chat]"), chatLog: q("[data-chat-log]"),
    chatForm: q("[data-chat-form]"), done: q("[data-done]"), doneText: q("[data-done-text]")
  };

  // The others' roles in the order of this participant's slots (the server routes the same way).
  var SLOT_ROLES = ["physician", "patient", "guest"].filter(function (other) { return other !== role; });
  var slots = SLOT_ROLES.map(function (slotRole, index) {
    var figure = root.querySelector('[data-remote="' + index + '"]');
    return {
      role: slotRole, figure: figure, video: figure.querySelector("[data-remote-video]"),
      state: figure.querySelector("[data-remote-state]"), name: figure.querySelector("[data-remote-name]"),
      roleLabel: figure.querySelector("[data-remote-role]"), muted: figure.querySelector("[data-remote-muted]"),
      cameraOff: figure.querySelector("[data-remote-camera-off]"), transceivers: [], left: false
    };
  });
  var WAIT_RETRY_MS = 10000;
  var generation = 0;          // join attempts: answers to an older one (or after Leave) are ignored
  var RETRY_BASE_MS = 500, RETRY_MAX_MS = 8000;
  var GIVE_UP_MS = 150000; // a little beyond the server's default grace (2 minutes)
  var STATS_EVERY_MS = 2000;
  var CLOSE = { normal: 1000, policy: 1008, ticket: 4401, notOpen: 4403, replaced: 4409, mediaFailed: 4410 };

  var local = null;            // the camera and microphone, kept across reconnections
  var pc = null, ws = null;    // the current attempt's peer connection and socket
  var others = {};             // participant id -> {name, role, state, muted, camera}
  var selfId = null;
  var muted = false, cameraOff = false;
  var finished = false;
  var attempt = 0, reconnectingSince = 0, retryTimer = null;
  var statsTimer = null, lastCounts = null;
  var lastError = null;

  function t(key, values) {
    var text = texts[key] || texts.error;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("%(" + name + ")s").join(String(values[name]));
    });
    return text.split("%%").join("%");
  }

  function setState(state) {
    root.setAttribute("data-state", state);
  }

  // Said by screen readers: what happens within a moment is said together (mute and camera at once).
  var announcing = [];
  function announce(text) {
    announcing.push(text);
    if (announcing.length > 1) return;
    ui.announce.textContent = "";
    window.setTimeout(function () {
      ui.announce.textContent = announcing.join(" ");
      announcing = [];
    }, 50);
  }

  function banner(text) {
    ui.banner.textContent = text || "";
    ui.banner.hidden = !text;
  }

  /* --- the camera and microphone ------------------------------------------------------------------------ */
  function openDevices() {
    var video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
    var media = navigator.mediaDevices;
    if (!media || !media.getUserMedia) return Promise.resolve(null);
    return media.getUserMedia({ audio: true, video: video }).catch(function () {
      return media.getUserMedia({ audio: true }).then(function (stream) {
        banner(t("audio_only"));
        return stream;
      });
    }).catch(function () {
      banner(t("no_devices"));
      return null;
    });
  }

  function track(kind) {
    if (!local) return null;
    return (kind === "audio" ? local.getAudioTracks() : local.getVideoTracks())[0] || null;
  }

  /* --- joining: a ticket, the socket, the peer connection ----------------------------------------------- */
  function start() {
    retryTimer = null;
    if (finished) return;
    var attemptOf = ++generation; // a Leave, or another attempt, makes this one's answers moot
    setState(reconnectingSince ? "reconnecting" : "connecting");
    window.fetch(joinUrl, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (finished || attemptOf !== generation) return;
        if (response.ok) {
          openSocket(body);
        } else {
          refused(response.status, body.code);
        }
      });
    }, function () {
      if (!finished && attemptOf === generation) reconnect(); // offline: try again
    });
  }

  // A guest usually opens the link before the physician has let the patient in: they wait, and we try again.
  var NOT_YET = ["not_admitted", "call_not_open", "too_early"];
  function waitForStart(code) {
    teardown();
    reconnectingSince = 0;
    setState("waiting");
    banner(t("error_" + code));
    ui.prejoin.hidden = true;
    retryTimer = window.setTimeout(start, WAIT_RETRY_MS);
  }

  function refused(status, code) {
    if (status === 401) {
      stop(t("error_unauthorized"));
    } else if (status === 503 || status >= 500) {
      if (reconnectingSince) {
        reconnect();
      } else {
        banner(t(code === "media_capacity" ? "error_media_capacity" : "error"));
        offerJoin();
      }
    } else if (role === "guest" && NOT_YET.indexOf(code) !== -1) {
      waitForStart(code === "too_early" ? code : "guest_not_started");
    } else if (code && texts["error_" + code]) {
      if (reconnectingSince || code === "too_early" || code === "media_capacity") {
        banner(t("error_" + code));
        offerJoin();
        reconnectingSince = 0;
      } else {
        stop(t("error_" + code));
      }
    } else {
      banner(t("error"));
      offerJoin();
    }
  }

  function offerJoin() {
    teardown();
    setState("ready");
    ui.prejoin.hidden = false;
    ui.join.disabled = false;
  }

  function openSocket(admission) {
    if (finished) return;
    var socket = new WebSocket(admission.ws_url);
    ws = socket;
    socket.onopen = function () {
      send({ type: "join", consultation_id: consultationId, ticket: admission.ticket });
    };
    socket.onmessage = function (message) {
      if (socket !== ws) return;
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      handle(event, admission.ice_servers || []);
    };
    socket.onclose = function (event) {
      if (socket !== ws) return;
      closed(event.code);
    };
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function openPeer(iceServers) {
    var connection = new RTCPeerConnection({ iceServers: iceServers, bundlePolicy: "max-bundle" });
    pc = connection;
    slots.forEach(function (slot, index) {
      slot.transceivers = ["audio", "video"].map(function (kind) {
        var mine = index === 0 ? track(kind) : null; // what this browser sends goes with the first slot
        return mine ? connection.addTransceiver(mine, { direction: "sendrecv", streams: [local] })
          : connection.addTransceiver(kind, { direction: "recvonly" });
      });
      slot.stream = new MediaStream();
      slot.video.srcObject = slot.stream;
    });
    connection.ontrack = function (event) {
      if (connection !== pc) return;
      slots.forEach(function (slot) {
        if (slot.transceivers.indexOf(event.transceiver) === -1) return;
        slot.stream.addTrack(event.track);
        slot.video.play().catch(function () { /* plays once the stream has frames */ });
      });
    };
    connection.onicecandidate = function (event) {
      if (connection !== pc) return;
      send({ type: "ice", candidate: event.candidate ? event.candidate.toJSON() : null });
    };
    connection.onconnectionstatechange = function () {
      if (connection !== pc) return;
      if (connection.connectionState === "connected") {
        connected();
      } else if (connection.connectionState === "failed") {
        reconnect();
      }
    };
    connection.createOffer().then(function (offer) {
      return connection.setLocalDescription(offer);
    }).then(function () {
      if (connection === pc) send({ type: "offer", sdp: connection.localDescription.sdp });
    }).catch(function () {
      if (connection === pc) reconnect();
    });
  }

  function connected() {
    attempt = 0;
    reconnectingSince = 0;
    setState("in_call");
    banner("");
    announce(t("connected"));
    startStats();
  }

  /* --- what the server says ----------------------------------------------------------------------------- */
  function handle(event, iceServers) {
    switch (event.type) {
      case "joined":
        selfId = event.participant_id;
        others = {};
        (event.participants || []).forEach(function (p) { others[p.participant_id] = p; });
        showRecording(event.recording, false, event.recording_paused);
        var hadFocus = document.activeElement === ui.join;
        ui.prejoin.hidden = true;
        ui.controls.hidden = false;
        ui.chat.hidden = false;
        if (hadFocus) ui.mute.focus(); // the Join button is gone: keep the keyboard user in the controls
        if (muted || cameraOff) send({ type: "media_state", muted: muted, camera: !cameraOff });
        openPeer(iceServers);
        showOthers();
        break;
      case "answer":
        if (pc) {
          var answered = pc;
          answered.setRemoteDescription({ type: "answer", sdp: event.sdp }).catch(function () {
            if (answered === pc) reconnect();
          });
        }
        break;
      case "participant_joined":
        others[event.participant.participant_id] = event.participant;
        slotOf(event.participant.role).left = false;
        announce(t("joined", { name: event.participant.name }));
        showOthers();
        break;
      case "participant_reconnecting":
        if (others[event.participant_id]) others[event.participant_id].state = "reconnecting";
        showOthers();
        break;
      case "participant_left":
        if (others[event.participant_id]) {
          var gone = others[event.participant_id].role;
          delete others[event.participant_id];
          slotOf(gone).left = true;
          announce(t(gone + "_left"));
        }
        showOthers();
        break;
      case "media_state":
        var who = others[event.participant_id];
        if (who) {
          if (who.muted !== event.muted) announce(t(event.muted ? "muted" : "unmuted", { name: who.name }));
          if (who.camera !== event.camera) announce(t(event.camera ? "camera_on" : "camera_off", { name: who.name }));
          who.muted = event.muted;
          who.camera = event.camera;
        }
        showOthers();
        break;
      case "recording":
        showRecording(event.active, true, event.paused);
        break;
      case "chat":
        addChat(event);
        break;
      case "ended":
        stop(t("ended"));
        break;
      case "error":
        lastError = event.code;
        if (event.code === "media_failed") {
          banner(t("error_media_failed"));
        } else if (texts["error_" + event.code]) {
          banner(t("error_" + event.code));
        }
        break;
      default:
        break;
    }
  }

  function closed(code) {
    if (finished) return;
    if (code === CLOSE.normal) {
      stop(t("ended"));
    } else if (code === CLOSE.replaced) {
      stop(t("replaced"));
    } else if (code === CLOSE.notOpen) {
      stop(t(texts["error_" + lastError] ? "error_" + lastError : "error_call_not_open"));
    } else if (code === CLOSE.policy) {
      banner(t("error"));
      offerJoin();
    } else {
      reconnect(); // ticket refused, media failed, server restarting, network gone: rejoin
    }
  }

  function slotOf(otherRole) {
    return slots[Math.max(0, SLOT_ROLES.indexOf(otherRole))];
  }

  function present(otherRole) {
    var found = null;
    Object.keys(others).forEach(function (id) {
      if (others[id].role === otherRole) found = others[id];
    });
    return found;
  }

  function showOthers() {
    slots.forEach(function (slot, index) {
      var other = present(slot.role);
      var text = "";
      if (other) {
        slot.name.textContent = other.name;
        slot.roleLabel.textContent = t("role_" + other.role);
        if (other.state === "reconnecting") text = t("other_reconnecting", { name: other.name });
      } else if (slot.left) {
        text = t(slot.role + "_left");
      } else if (index === 0) {
        text = t(role === "physician" ? "waiting_other_patient" : "waiting_other_physician");
      }
      slot.state.textContent = text;
      slot.muted.hidden = !(other && other.muted);
      slot.cameraOff.hidden = !(other && other.camera === false);
      if (index > 0) slot.figure.hidden = !other && !slot.left; // the guest's place shows once they came
    });
    ui.stage.setAttribute("data-parties", String(1 + slots.filter(function (slot) {
      return !slot.figure.hidden;
    }).length));
  }

  function showRecording(active, tell, paused) {
    ui.recording.hidden = !active;
    if (ui.pause) {
      // The physician may pause (an examination the patient would rather not have recorded) and resume.
      ui.pause.hidden = !active && !paused;
      ui.pause.setAttribute("aria-pressed", paused ? "true" : "false");
      ui.pause.textContent = t(paused ? "resume_recording" : "pause_recording");
    }
    if (tell) announce(t(paused ? "recording_paused" : active ? "recording_on" : "recording_off"));
  }

  function addChat(event) {
    var item = document.createElement("li");
    var from = document.createElement("span");
    from.className = "from";
    from.textContent = event.participant_id === selfId ? (event.name || "") : event.name;
    var text = document.createElement("span");
    text.textContent = event.text; // text only: the server removed markup, and it is never parsed here
    item.appendChild(from);
    item.appendChild(text);
    ui.chatLog.appendChild(item);
    ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
    if (event.participant_id !== selfId) announce(t("chat_from", { name: event.name, text: event.text }));
  }

  /* --- connection quality from getStats() --------------------------------------------------------------- */
  function startStats() {
    if (statsTimer) return;
    lastCounts = null;
    statsTimer = window.setInterval(measure, STATS_EVERY_MS);
  }

  function measure() {
    if (!pc) return;
    var connection = pc;
    connection.getStats().then(function (report) {
      if (connection !== pc) return;
      var rtt = null, lost = 0, received = 0, fps = null, decoded = 0;
      report.forEach(function (s) {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" &&
            typeof s.currentRoundTripTime === "number") {
          rtt = s.currentRoundTripTime * 1000;
        } else if (s.type === "inbound-rtp") {
          lost += s.packetsLost || 0;
          received += s.packetsReceived || 0;
          if (s.kind === "video") { // one stream per slot: the best frame rate, all frames decoded
            if (typeof s.framesPerSecond === "number") fps = Math.max(fps || 0, s.framesPerSecond);
            decoded += s.framesDecoded || 0;
          }
        }
      });
      var loss = 0;
      if (lastCounts) {
        var newLost = Math.max(0, lost - lastCounts.lost), newReceived = Math.max(0, received - lastCounts.received);
        loss = newLost + newReceived ? (100 * newLost) / (newLost + newReceived) : 0;
      }
      lastCounts = { lost: lost, received: received };
      showQuality(rtt, loss, fps, decoded);
    }).catch(function () { /* the connection closed meanwhile */ });
  }

  function showQuality(rtt, loss, fps, decoded) {
    var other = present(slots[0].role);
    var expectVideo = other && other.camera !== false && other.state !== "reconnecting";
    var level = "good";
    if ((rtt !== null && rtt > 400) || loss > 5 || (expectVideo && fps !== null && fps < 8)) {
      level = "poor";
    } else if ((rtt !== null && rtt > 200) || loss > 2 || (expectVideo && fps !== null && fps < 18)) {
      level = "fair";
    }
    var detail = t("quality_detail", {
      rtt: rtt === null ? "—" : Math.round(rtt), loss: loss.toFixed(1), fps: fps === null ? "—" : Math.round(fps)
    });
    var q = ui.quality;
    if (q.getAttribute("data-level") !== level && q.getAttribute("data-level") !== "unknown") {
      announce(t("quality_" + level));
    }
    q.hidden = false;
    q.setAttribute("data-level", level);
    q.setAttribute("data-frames-decoded", String(decoded));
    q.textContent = t("quality_" + level);
    q.title = detail;
    q.setAttribute("aria-label", t("quality_" + level) + ": " + detail);
  }

  /* --- losing and regaining the connection -------------------------------------------------------------- */
  function teardown() {
    generation += 1;
    if (statsTimer) window.clearInterval(statsTimer);
    statsTimer = null;
    if (retryTimer) window.clearTimeout(retryTimer);
    retryTimer = null;
    var socket = ws, connection = pc;
    ws = null;
    pc = null;
    if (socket) socket.close(CLOSE.normal);
    if (connection) connection.close();
  }

  function reconnect() {
    if (finished || retryTimer) return;
    teardown();
    if (!reconnectingSince) {
      reconnectingSince = Date.now();
      announce(t("reconnecting"));
    }
    if (Date.now() - reconnectingSince > GIVE_UP_MS) {
      reconnectingSince = 0;
      banner(t("gave_up"));
      offerJoin();
      return;
    }
    setState("reconnecting");
    banner(t("reconnecting"));
    var delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * Math.pow(2, attempt)) * (0.8 + 0.4 * Math.random());
    attempt += 1;
    retryTimer = window.setTimeout(start, delay);
  }

  function stop(text) {
    if (finished) return;
    finished = true;
    teardown();
    if (local) local.getTracks().forEach(function (mine) { mine.stop(); });
    ui.self.srcObject = null;
    slots.forEach(function (slot) { slot.video.srcObject = null; });
    ui.controls.hidden = true;
    ui.prejoin.hidden = true;
    ui.chat.querySelector("form").hidden = true;
    banner("");
    setState("done");
    ui.doneText.textContent = text;
    ui.done.hidden = false;
    ui.done.querySelector("a").focus();
    announce(text);
  }

  /* --- the buttons -------------------------------------------------------------------------------------- */
  ui.join.addEventListener("click", function () {
    ui.join.disabled = true;
    banner("");
    var ready = local ? Promise.resolve(local) : openDevices();
    ready.then(function (stream) {
      local = stream;
      if (local) ui.self.srcObject = local;
      slots.forEach(function (slot) { slot.video.muted = false; });
      start();
    });
  });

  /* Mute and camera: toggle buttons with a fixed name ("Mute", "Turn camera off") whose pressed state says
     whether it is in effect. The track stays (no renegotiation), only disabled; the others are told. */
  function toggle(button, kind) {
    button.addEventListener("click", function () {
      var disabled = button.getAttribute("aria-pressed") !== "true";
      if (kind === "audio") muted = disabled; else cameraOff = disabled;
      var mine = track(kind);
      if (mine) mine.enabled = !disabled;
      button.setAttribute("aria-pressed", String(disabled));
      send({ type: "media_state", muted: muted, camera: !cameraOff });
    });
  }

  toggle(ui.mute, "audio");
  toggle(ui.camera, "video");

  if (ui.end) {
    ui.end.addEventListener("click", function () {
      if (!window.confirm(t("confirm_end"))) return;
      send({ type: "end" }); // the server answers `ended` to everyone, then closes
    });
  }

  if (ui.pause) {
    ui.pause.addEventListener("click", function () {
      send({ type: "pause_recording", paused: ui.pause.getAttribute("aria-pressed") !== "true" });
    });
  }

  if (ui.leave) {
    ui.leave.addEventListener("click", function () {
      if (!window.confirm(t("confirm_leave"))) return;
      send({ type: "leave" });
      stop(t("left"));
    });
  }

  ui.chatForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var input = ui.chatForm.querySelector("input");
    var text = input.value.trim();
    if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
    send({ type: "chat", text: text });
    input.value = "";
  });

  window.addEventListener("online", function () {
    if (reconnectingSince && retryTimer) {
      window.clearTimeout(retryTimer);
      retryTimer = null;
      start();
    }
  });

}());
