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
  setInterval(tick, 1000);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("htmx:sseMessage", tick);

  // --- the live connection ----------------------------------------------------------
  function liveStatus(text, state) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.className = "live-status " + state;
  }
  document.addEventListener("htmx:sseOpen", function () { liveStatus("● live", "fresh"); });
  document.addEventListener("htmx:sseError", function () {
    liveStatus("connection lost: reconnecting…", "lost");
  });
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type === "signed-out") {
      event.preventDefault();
      window.location.assign("/sign-in");
    }
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
        (button.dataset.passkey === "enrol" ? enrol : signIn)(button);
      });
    });
  });
})();
