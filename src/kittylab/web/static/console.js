// KittyLab console: the little the server cannot render. Passkey ceremonies, ages that
// tick, the live connection's state, and errors shown in words where the action was.
"use strict";

(function () {
  // --- errors: the API's problem details, shown where the action was -----------------
  function problemText(xhr) {
    try {
      const problem = JSON.parse(xhr.responseText);
      return problem.detail || problem.title || "The server refused this.";
    } catch (e) {
      return xhr.status ? "The server answered " + xhr.status + ". Try again." : "No answer from the server: check the connection and try again.";
    }
  }

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status === 401) { window.location.assign("/sign-in"); return; }
    const target = event.detail.target;
    if (target) {
      target.innerHTML = "";
      const box = document.createElement("div");
      box.className = "outcome refused";
      const strong = document.createElement("strong");
      strong.textContent = "Refused: ";
      box.append(strong, document.createTextNode(problemText(xhr)));
      target.append(box);
    }
  });
  document.addEventListener("htmx:sendError", function (event) {
    const target = event.detail.target;
    if (target) target.textContent = "No answer from the server: check the connection and try again.";
  });

  // --- ages: every live value says how old it is, and when it is stale ---------------
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    const m = Math.round(s / 60);
    if (m < 60) return m + " min ago";
    const h = Math.round(m / 60);
    return h < 48 ? h + " h ago" : Math.round(h / 24) + " days ago";
  }
  function tick() {
    const floor = document.querySelector("[data-stale-after]");
    const staleAfter = floor ? Number(floor.dataset.staleAfter) * 1000 : Infinity;
    const now = Date.now();
    document.querySelectorAll("time[data-at]").forEach(function (el) {
      const age = now - Number(el.dataset.at);
      const stale = age > staleAfter;
      el.textContent = ago(age) + (stale ? " · stale" : "");
      el.classList.toggle("stale", stale);
    });
  }
  // A region the page re-reads every few seconds says when it last did ("updated 3 s
  // ago"), by this browser's clock; it is stale once three reads in a row are missing.
  function stampFresh(root) {
    (root || document).querySelectorAll("time[data-fresh]:not([data-fresh-at])").forEach(function (el) {
      el.dataset.freshAt = String(Date.now());
    });
  }
  function tickFresh() {
    const now = Date.now();
    document.querySelectorAll("time[data-fresh-at]").forEach(function (el) {
      const box = el.closest(".freshness");
      const every = Number(box && box.dataset.every) || 5;
      const age = now - Number(el.dataset.freshAt);
      const stale = age > every * 3000;
      el.textContent = stale ? "stale: not updated for " + ago(age).replace(" ago", "") + " — retrying…" : "updated " + ago(age);
      if (box) box.classList.toggle("stale", stale);
      const region = el.closest(".live-region");
      if (region) region.classList.toggle("stale", stale);
    });
  }
  setInterval(function () { tick(); tickFresh(); }, 1000);
  document.addEventListener("DOMContentLoaded", function () { stampFresh(); tick(); tickFresh(); });
  document.addEventListener("htmx:afterSwap", function (event) { stampFresh(event.detail.target); tick(); tickFresh(); });
  document.addEventListener("htmx:sseMessage", tick);

  // --- the live connection ----------------------------------------------------------
  // Loading until the stream opens, live while it is, lost (every value marked "not
  // live") until it is back: the SSE extension reconnects by itself.
  function liveStatus(text, state) {
    document.querySelectorAll("[sse-connect]").forEach(function (el) {
      el.dataset.live = state === "fresh" ? "live" : state;
      el.setAttribute("aria-busy", state === "loading" ? "true" : "false");
    });
    const el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.className = "live-status " + state;
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[sse-connect]")) liveStatus("connecting…", "loading");
  });
  document.addEventListener("htmx:sseOpen", function () { liveStatus("● live", "fresh"); });
  document.addEventListener("htmx:sseError", function () {
    liveStatus("connection lost: reconnecting…", "lost");
  });
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type === "signed-out") {
      event.preventDefault();
      const stream = event.target.closest("[data-signed-out]");
      window.location.assign(stream ? stream.dataset.signedOut : "/sign-in");
    }
  });

  // --- themes: the system's, unless this browser chose one -----------------------------
  const darkQuery = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function darkNow() {
    const chosen = document.documentElement.dataset.theme;
    return chosen ? chosen === "dark" : !!(darkQuery && darkQuery.matches);
  }
  function showTheme() {
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      button.setAttribute("aria-pressed", darkNow() ? "true" : "false");
    });
  }
  document.addEventListener("DOMContentLoaded", showTheme);
  if (darkQuery && darkQuery.addEventListener) darkQuery.addEventListener("change", showTheme);
  document.addEventListener("click", function (event) {
    if (!event.target.closest("[data-theme-toggle]")) return;
    const next = darkNow() ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("kittylab-theme", next); } catch (e) { /* private mode: this page only */ }
    showTheme();
  });

  // --- installable: the service worker keeps the shell for when the server is away ------
  if ("serviceWorker" in navigator && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () { /* the console works without it */ });
    });
  }

  // The "reconnecting" shell (the service worker's, while the server is away): back to
  // the console as soon as the server answers.
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector("[data-offline]")) return;
    const target = window.location.pathname === "/offline" ? "/" : window.location.href;
    let tries = 0;
    async function attempt() {
      tries += 1;
      try {
        const answer = await fetch("/healthz", { cache: "no-store" });
        if (answer.ok) { window.location.replace(target); return; }
      } catch (e) { /* still away */ }
      const status = document.getElementById("reconnect");
      if (status) status.textContent = "Reconnecting… (tried " + tries + (tries === 1 ? " time)" : " times)");
    }
    setInterval(attempt, 3000);
    document.addEventListener("click", function (event) {
      if (event.target.closest("[data-reconnect-now]")) attempt();
    });
  });

  // --- camera snapshots ---------------------------------------------------------------
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-refresh-snapshot]");
    if (!button) return;
    const img = button.closest("figure").querySelector("img");
    img.src = img.src.split("?")[0] + "?t=" + Date.now();
  });

  // --- passkeys ---------------------------------------------------------------------
  function toBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, function (c) { return c.charCodeAt(0); }).buffer;
  }
  function toB64url(buffer) {
    let s = "";
    new Uint8Array(buffer).forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }
  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return o;
  }
  function credentialJson(cred) {
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: response,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
    };
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(data.detail || data.title || "refused (" + response.status + ")");
    return data;
  }
  function say(text, kind) {
    const el = document.getElementById("message");
    el.textContent = text;
    el.className = "result " + (kind || "");
  }
  function ceremonyError(error) {
    if (error && error.name === "NotAllowedError") return "The passkey prompt was closed or timed out. Press the button to try again.";
    if (error && error.name === "InvalidStateError") return "This authenticator already holds a passkey for you here: sign in instead.";
    return (error && error.message) || "Something went wrong. Try again.";
  }

  async function signIn(button) {
    button.disabled = true;
    say("Waiting for your passkey…");
    try {
      const start = await post("/api/webauthn/sign-in/options", {});
      const cred = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
      const done = await post("/api/webauthn/sign-in", { challengeId: start.challengeId, credential: credentialJson(cred) });
      say("Signed in as " + done.username + ".", "ok");
      window.location.assign(done.redirect || "/");
    } catch (error) {
      say(ceremonyError(error), "error");
      button.disabled = false;
    }
  }

  // A wall terminal: a person taps their security key to check in there (issue 18).
  async function tap(button) {
    button.disabled = true;
    say("Touch your security key…");
    try {
      const start = await post("/console/terminal/tap/options", {});
      const cred = await navigator.credentials.get({ publicKey: requestOptions(start.publicKey) });
      const done = await post("/console/terminal/tap", { challengeId: start.challengeId, credential: credentialJson(cred) });
      say("Checked in: " + done.displayName + ".", "ok");
      window.location.reload();
    } catch (error) {
      say(ceremonyError(error), "error");
      button.disabled = false;
    }
  }

  let invite = "";
  async function enrol(button) {
    if (!invite) { say("This page needs the whole enrolment link (it ends in #kli_…). Open the link you were given.", "error"); return; }
    button.disabled = true;
    say("Waiting for your passkey…");
    try {
      const start = await post("/api/webauthn/register/options", { invite: invite });
      const cred = await navigator.credentials.create({ publicKey: creationOptions(start.publicKey) });
      const name = document.getElementById("passkey-name").value || "passkey";
      const done = await post("/api/webauthn/register", { invite: invite, challengeId: start.challengeId, credential: credentialJson(cred), name: name });
      say("Passkey enrolled. Signed in as " + done.username + ".", "ok");
      window.location.assign(done.redirect || "/");
    } catch (error) {
      say(ceremonyError(error), "error");
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.location.pathname === "/enrol" && window.location.hash.length > 1) {
      invite = decodeURIComponent(window.location.hash.slice(1));
      // Off the address bar (and out of screenshots): the secret stays in this page only.
      history.replaceState(null, "", "/enrol");
    }
    document.querySelectorAll("[data-passkey]").forEach(function (button) {
      if (!window.PublicKeyCredential) {
        button.disabled = true;
        say("This browser cannot use passkeys here. Open the console in a current browser at the address the server printed.", "error");
        return;
      }
      button.addEventListener("click", function () {
        ({ enrol: enrol, tap: tap }[button.dataset.passkey] || signIn)(button);
      });
    });
  });
})();
