// KittyLab console, the prints page: queueing a print is the API's own two calls
// (upload the file, then create the job), with the page's CSRF token; the queue and
// the printer then update live over the page's event stream.
"use strict";

(function () {
  function csrf() {
    const headers = document.body.getAttribute("hx-headers");
    return headers ? JSON.parse(headers)["X-CSRF-Token"] : "";
  }
  function say(box, kind, title, text) {
    box.innerHTML = "";
    const div = document.createElement("div");
    div.className = "outcome " + kind;
    const strong = document.createElement("strong");
    strong.textContent = title + " ";
    div.append(strong, document.createTextNode(text));
    box.append(div);
  }
  async function call(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
    const body = await response.json().catch(function () { return {}; });
    if (response.status === 401) { window.location.assign("/sign-in"); throw new Error("signed out"); }
    if (!response.ok) throw new Error(body.detail || body.title || "The server answered " + response.status + ".");
    return body;
  }
  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  async function queue(form) {
    const box = document.getElementById(form.dataset.result);
    const file = form.elements.file.files[0];
    const cad = form.elements.cad_artifact_id ? form.elements.cad_artifact_id.value : "";
    if (!file && !cad) { say(box, "refused", "Nothing to print:", "choose a file or a CAD part first."); return; }
    if (file && cad) { say(box, "refused", "Two things to print:", "choose a file or a CAD part, not both."); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const headers = { "X-CSRF-Token": csrf() };
    // One key per press: a retried request never becomes a second print.
    const job = { deviceId: form.dataset.deviceId, idempotencyKey: newKey() };
    try {
      if (file) {
        say(box, "pending", "Uploading", file.name + "…");
        const uploaded = await call("/api/fabrication/files/" + encodeURIComponent(file.name), {
          method: "PUT", headers: Object.assign({ "Content-Type": "application/octet-stream" }, headers), body: file,
        });
        job.fileKey = uploaded.fileKey;
      } else {
        job.cadArtifactId = cad;
      }
      const made = await call("/api/fabrication/jobs", {
        method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, headers), body: JSON.stringify(job),
      });
      const what = file ? file.name : "the CAD part";
      say(box, "ok", "Queued:", what + " (job " + made.id.slice(0, 8) + "). It is checked" + (file && !/\.(gcode|gco|g)$/i.test(file.name) ? " and sliced" : "") + ", then starts when the printer is free and its bed is clear.");
      form.reset();
    } catch (error) {
      say(box, "refused", "Not queued:", error.message);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-queue-print]");
    if (!form) return;
    event.preventDefault();
    queue(form);
  });
})();
