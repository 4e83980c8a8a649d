// KittyLab console, the talk page: the transcript stays in order and follows the newest
// message; push-to-talk records the microphone (MediaRecorder) and sends it to the voice
// endpoint (POST /api/voice/turn), plays the spoken reply, and shows the turn as the server
// renders it. Typed turns, the live transcript and outcomes are htmx's (talk.html).
"use strict";

(function () {
  const HOLD_MS = 350; // pressed longer than this: hold-to-talk (let go sends); shorter: a tap toggles

  function csrf() {
    const headers = document.body.getAttribute("hx-headers");
    return headers ? JSON.parse(headers)["X-CSRF-Token"] : "";
  }
  function transcript() { return document.getElementById("transcript"); }
  function conversationId() {
    const field = document.getElementById("talk-conversation-id");
    return field ? field.value : "";
  }

  // --- the transcript: each message once, in order, newest in view --------------------
  // A message can come twice (the turn's own answer and the live stream): the first stays.
  // New messages scroll into view unless the person scrolled up to read; their own turn
  // always does.
  let follow = true, ownTurn = true;
  function nearBottom(list) { return list.scrollHeight - list.scrollTop - list.clientHeight < 80; }
  function before() {
    const list = transcript();
    if (list) follow = ownTurn || nearBottom(list);
  }
  function settle() {
    const list = transcript();
    if (!list) return;
    const seen = new Set();
    list.querySelectorAll(":scope > li.msg").forEach(function (li) {
      if (seen.has(li.id)) li.remove(); else seen.add(li.id);
    });
    if (follow) list.scrollTop = list.scrollHeight;
  }
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    const list = transcript();
    if (!list || event.target !== list) return;
    const id = event.detail.lastEventId;
    if (id && document.getElementById("msg-" + id)) { event.preventDefault(); return; }
    before();
  });
  document.addEventListener("htmx:beforeSwap", before);
  document.addEventListener("htmx:sseMessage", settle);
  // A conversation that began on this page goes live: the bar says so from now on.
  document.addEventListener("htmx:sseOpen", function () {
    const live = document.getElementById("live-status");
    if (live) live.hidden = false;
  });
  // An example fills the box, ready to send or change.
  document.addEventListener("click", function (event) {
    const example = event.target.closest("[data-example]");
    if (!example) return;
    const input = document.getElementById("talk-text");
    input.value = example.dataset.example;
    input.focus();
  });
  document.addEventListener("htmx:afterSettle", function () { settle(); ownTurn = false; });
  document.addEventListener("DOMContentLoaded", function () {
    settle();
    ownTurn = false;
    const channel = document.querySelector("[data-channel]");
    if (channel && channel.value === "mac" && window.matchMedia("(pointer: coarse)").matches) channel.value = "ipad";
  });

  // A typed turn: say it is on its way; once through, clear the box for the next one.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.id !== "composer") return;
    ownTurn = true;
    const result = document.getElementById("talk-result");
    result.innerHTML = '<div class="outcome pending"><strong>Sending…</strong> the lab is working it out.</div>';
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt.id !== "composer") return;
    if (!event.detail.successful) return; // the refusal is shown in #talk-result
    document.getElementById("talk-result").innerHTML = "";
    const input = document.getElementById("talk-text");
    input.value = "";
    input.focus();
  });

  // --- push-to-talk -----------------------------------------------------------------
  let state = "idle"; // idle → starting → recording → sending → idle
  let pressedAt = 0, startedAt = 0, ticker = 0, stopWhenReady = false, fromPointerOrKey = false, holding = false;
  let stream = null, recorder = null, chunks = [];

  function button() { return document.getElementById("push-to-talk"); }
  function status(text, kind) {
    const el = document.getElementById("ptt-status");
    if (!el) return;
    el.textContent = text;
    el.className = "ptt-status " + (kind || "");
  }
  function show(stateName, label) {
    const b = button();
    state = stateName;
    b.dataset.state = stateName;
    b.setAttribute("aria-pressed", stateName === "recording" || stateName === "starting" ? "true" : "false");
    b.querySelector(".ptt-label").textContent = label;
    b.disabled = stateName === "sending";
  }
  function mimeType() {
    const choices = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/ogg"];
    for (const type of choices) if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
    return "";
  }

  async function start() {
    show("starting", "Listening…");
    stopWhenReady = false;
    status("Opening the microphone…");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    } catch (error) {
      show("idle", "Hold to talk");
      status(error && error.name === "NotAllowedError"
        ? "The microphone is blocked for this page: allow it in the browser's site settings, or type instead."
        : "No microphone could be opened (" + ((error && error.message) || "unknown error") + "). Type instead.", "error");
      return;
    }
    const type = mimeType();
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    chunks = [];
    recorder.addEventListener("dataavailable", function (e) { if (e.data && e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", send);
    recorder.start();
    startedAt = performance.now();
    show("recording", holding ? "Release to send" : "Tap to send");
    const limit = Number(button().dataset.maxSeconds || 30);
    ticker = setInterval(function () {
      const seconds = (performance.now() - startedAt) / 1000;
      button().dataset.seconds = seconds.toFixed(1);
      status("● Recording " + seconds.toFixed(1) + " s: speak now, then let go (or tap) to send.", "recording");
      if (seconds >= limit) stop();
    }, 100);
    if (stopWhenReady) stop();
  }

  function stop() {
    if (state === "starting") { stopWhenReady = true; return; } // let go before the microphone opened
    if (state !== "recording") return;
    clearInterval(ticker);
    show("sending", "Sending…");
    status("Sending what you said…");
    recorder.stop(); // → send, once the last data is in
    stream.getTracks().forEach(function (t) { t.stop(); });
  }

  async function send() {
    const type = (recorder.mimeType || "audio/webm");
    const audio = new Blob(chunks, { type: type });
    const started = conversationId();
    const channel = document.querySelector("[data-channel]");
    const params = new URLSearchParams({ channel: channel ? channel.value : "ipad" });
    if (started) params.set("conversationId", started);
    try {
      const response = await fetch("/api/voice/turn?" + params.toString(), {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": type, "X-CSRF-Token": csrf() }, body: audio,
      });
      const body = await response.json().catch(function () { return {}; });
      if (response.status === 401) { window.location.assign("/sign-in"); return; }
      if (!response.ok) throw new Error(body.detail || body.title || "The server answered " + response.status + ".");
      status("Heard: “" + body.transcript + "”", "ok");
      play(body.audio);
      document.dispatchEvent(new CustomEvent("kittylab:acted"));
      if (document.querySelector("[data-kiosk]")) {
        // A wall terminal has no transcript: the reply is shown (and spoken) where it is.
        const answer = document.getElementById("talk-result");
        answer.textContent = (body.replies || []).map(function (r) { return r.text; }).join(" ");
        return;
      }
      ownTurn = true;
      const url = "/console/talk/" + body.conversationId + "/turns/" + body.routing.requestId + (started ? "" : "?started=true");
      await htmx.ajax("GET", url, { target: "#talk-result", swap: "innerHTML" });
    } catch (error) {
      status("Not sent: " + error.message + " Try again, or type it.", "error");
    } finally {
      button().dataset.seconds = "0";
      show("idle", "Hold to talk");
    }
  }

  function play(url) {
    const player = document.getElementById("reply-audio");
    if (!player || !url) return;
    player.src = url;
    player.hidden = false;
    player.play().catch(function () { /* autoplay refused: the controls stay to press */ });
  }

  function press() {
    pressedAt = performance.now();
    holding = true;
    if (state === "idle") start();
    else if (state === "recording" || state === "starting") { holding = false; stop(); } // the second tap
  }
  function release() {
    if (!holding) return;
    holding = false;
    if (performance.now() - pressedAt >= HOLD_MS) stop(); // held: letting go sends
    else if (state === "recording") button().querySelector(".ptt-label").textContent = "Tap to send";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const b = button();
    if (!b) return;
    if (!window.isSecureContext || !navigator.mediaDevices || !window.MediaRecorder) {
      b.disabled = true;
      status("Voice needs a secure page (https, or the server's own localhost address) in a current browser. Type instead.", "error");
      return;
    }
    b.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      event.preventDefault();
      fromPointerOrKey = true;
      b.setPointerCapture(event.pointerId);
      press();
    });
    b.addEventListener("pointerup", release);
    b.addEventListener("pointercancel", release);
    b.addEventListener("keydown", function (event) {
      if (event.key !== " " && event.key !== "Enter") return;
      event.preventDefault(); // no click follows
      if (!event.repeat) press();
    });
    b.addEventListener("keyup", function (event) {
      if (event.key !== " " && event.key !== "Enter") return;
      event.preventDefault();
      release();
    });
    // A click that no pointer or key made (a screen reader's): one tap, as a toggle.
    b.addEventListener("click", function (event) {
      event.preventDefault();
      if (fromPointerOrKey) { fromPointerOrKey = false; return; }
      press();
    });
    b.addEventListener("contextmenu", function (event) { event.preventDefault(); }); // a long touch
  });
})();
