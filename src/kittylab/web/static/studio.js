// KittyLab console, the CAD studio: generating, iterating and sending a part to a printer
// are the API's own calls (POST /api/cad/generate, /api/cad/jobs/{id}/iterate,
// /api/fabrication/jobs), made with the page's CSRF token; the server renders the rest.
"use strict";

(function () {
  function csrf() {
    const headers = document.body.getAttribute("hx-headers");
    return headers ? JSON.parse(headers)["X-CSRF-Token"] : "";
  }
  function say(box, kind, title, text, link) {
    box.innerHTML = "";
    const div = document.createElement("div");
    div.className = "outcome " + kind;
    const strong = document.createElement("strong");
    strong.textContent = title + " ";
    div.append(strong, document.createTextNode(text));
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      div.append(document.createTextNode(" "), a);
    }
    box.append(div);
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(function () { return {}; });
    if (response.status === 401) { window.location.assign("/sign-in"); throw new Error("signed out"); }
    if (!response.ok) throw new Error(answer.detail || answer.title || "The server answered " + response.status + ".");
    return answer;
  }
  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  // offline when every chosen provider works offline, online when none does, else both
  function policyFor(boxes) {
    const offline = boxes.filter(function (b) { return b.dataset.offline === "true"; }).length;
    if (offline === boxes.length) return "offline";
    return offline === 0 ? "online" : "auto";
  }
  async function busy(form, work) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try { await work(); } finally { button.disabled = false; }
  }

  async function generate(form) {
    const box = document.getElementById("generate-result");
    const prompt = form.elements.prompt.value.trim();
    const boxes = Array.from(form.querySelectorAll("input[name=providers]:checked"));
    if (!prompt) { say(box, "refused", "Nothing to build:", "describe the part first."); return; }
    if (!boxes.length) { say(box, "refused", "No provider:", "tick at least one provider."); return; }
    const body = {
      prompt: prompt,
      policyMode: policyFor(boxes),
      providers: boxes.map(function (b) { return b.value; }),
      compare: boxes.length > 1,
      wait: false,
    };
    if (form.elements.printer_id.value) body.printerId = form.elements.printer_id.value;
    say(box, "pending", "Starting:", "recording the job…");
    try {
      const job = await post("/api/cad/generate", body);
      window.location.assign("/studio/jobs/" + job.cadJobId);
    } catch (error) {
      say(box, "refused", "Not started:", error.message);
    }
  }

  async function iterate(form) {
    const box = document.getElementById("iterate-result");
    const followUp = form.elements.follow_up.value.trim();
    if (!followUp) { say(box, "refused", "Nothing to change:", "say what to change, like “make it 5 mm taller”."); return; }
    const providers = form.dataset.providers ? form.dataset.providers.split(",") : [];
    const body = {
      followUp: followUp,
      policyMode: form.dataset.policy || "offline",
      providers: providers,
      compare: form.dataset.compare === "true",
      wait: false,
    };
    if (form.dataset.printer) body.printerId = form.dataset.printer;
    say(box, "pending", "Starting:", "recording the iteration…");
    try {
      const job = await post("/api/cad/jobs/" + form.dataset.job + "/iterate", body);
      window.location.assign("/studio/jobs/" + job.cadJobId);
    } catch (error) {
      say(box, "refused", "Not started:", error.message);
    }
  }

  async function send(form) {
    const box = document.getElementById(form.dataset.result);
    const select = form.elements.device_id;
    const printer = select.options[select.selectedIndex].text.replace(/ \(too small\)$/, "");
    say(box, "pending", "Sending", "to " + printer + "…");
    try {
      // One key per press: a retried request never becomes a second print.
      await post("/api/fabrication/jobs", {
        deviceId: select.value, cadArtifactId: form.dataset.artifact, idempotencyKey: newKey(),
      });
      say(box, "ok", "Queued on " + printer + ":",
        "the part is sliced, then printed when the printer is free and its bed is clear.",
        { href: "/prints", text: "Follow it on the prints page." });
      if (window.htmx) window.htmx.trigger(document.body, "lineage-changed");
    } catch (error) {
      say(box, "refused", "Not queued:", error.message);
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    let work = null;
    if (form.matches("form[data-generate]")) work = function () { return generate(form); };
    else if (form.matches("form[data-iterate]")) work = function () { return iterate(form); };
    else if (form.matches("form[data-send-print]")) work = function () { return send(form); };
    if (!work) return;
    event.preventDefault();
    busy(form, work);
  });
})();
