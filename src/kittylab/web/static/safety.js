// The safety desk: approve a held request with a passkey. The server hands out the
// event's canonical approval payload with a fresh nonce; the passkey signs its SHA-256
// (the WebAuthn challenge, user verification required); the server checks it all.
"use strict";

(function () {
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
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"]; } catch (e) { return ""; }
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (response.status === 401) { window.location.assign("/sign-in"); throw new Error("signed out"); }
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) throw new Error(data.detail || data.title || "refused (" + response.status + ")");
    return data;
  }
  function say(card, text, kind) {
    const el = card.querySelector(".result");
    el.textContent = text;
    el.className = "result " + (kind || "");
  }
  function ppeOf(form) {
    const items = Array.from(form.querySelectorAll("input[name=ppe]:checked")).map(function (i) { return i.value; });
    const free = form.querySelector("input[name=ppe-free]");
    if (free) free.value.split(/[\s,]+/).forEach(function (v) { if (v) items.push(v.toLowerCase()); });
    return items;
  }

  async function approve(form) {
    const card = form.closest(".safety-event");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    card.classList.add("busy");
    say(card, "Waiting for your passkey…");
    try {
      const url = "/console/safety/events/" + form.dataset.approve + "/approve";
      const start = await post(url + "/options", {});
      const o = start.publicKey;
      o.challenge = toBytes(o.challenge);
      (o.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
      const cred = await navigator.credentials.get({ publicKey: o });
      const r = cred.response;
      const credential = {
        id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
        response: {
          clientDataJSON: toB64url(r.clientDataJSON),
          authenticatorData: toB64url(r.authenticatorData),
          signature: toB64url(r.signature),
          userHandle: r.userHandle ? toB64url(r.userHandle) : undefined,
        },
        clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      };
      const done = await post(url, { nonce: start.nonce, payload: start.payload, credential: credential, ppe: ppeOf(form) });
      say(card, done.message, "ok");
      const desk = document.getElementById("desk-message");
      if (desk) { desk.textContent = done.message; desk.className = "result ok"; }
      card.classList.remove("busy");
      if (window.htmx) {
        window.htmx.ajax("GET", "/console/safety/pending", { target: "#pending", swap: "innerHTML" });
        window.htmx.trigger(document.body, "safety-decided");
      }
    } catch (error) {
      const text = error && error.name === "NotAllowedError"
        ? "The passkey prompt was closed or timed out. Press the button to try again."
        : (error && error.message) || "Something went wrong. Try again.";
      say(card, "Refused: " + text, "error");
      button.disabled = false;
      card.classList.remove("busy");
    }
  }

  // A denial (htmx) is a decision too: the recent list follows.
  document.addEventListener("htmx:afterRequest", function (event) {
    const path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (event.detail.successful && path && /\/deny$/.test(path)) window.htmx.trigger(document.body, "safety-decided");
  });

  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-approve]");
    if (!form) return;
    event.preventDefault();
    if (!window.PublicKeyCredential) {
      say(form.closest(".safety-event"), "This browser cannot use passkeys here.", "error");
      return;
    }
    approve(form);
  });
})();
