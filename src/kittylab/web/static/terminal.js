// KittyLab wall terminal (issue 18): the tapped-in person's countdown (the server ends
// their session after the same idle time; the page then goes back to "tap your key"),
// and the camera picture kept fresh.
"use strict";

(function () {
  const MARGIN_SECONDS = 1; // past the server's end: its idle clock started before this page heard back
  let left = 0, total = 0;

  function show() {
    const el = document.getElementById("tap-left");
    if (el) el.textContent = String(Math.max(0, Math.min(Math.ceil(left), total - MARGIN_SECONDS)));
  }
  function reset() { left = total; show(); }

  document.addEventListener("DOMContentLoaded", function () {
    const tapped = document.querySelector("[data-tap-seconds]");
    if (tapped) {
      total = Number(tapped.dataset.tapSeconds) + MARGIN_SECONDS;
      reset();
      setInterval(function () {
        left -= 1;
        show();
        if (left <= 0) window.location.assign("/terminal");
      }, 1000);
    }
    const picture = document.querySelector("img[data-auto-refresh]");
    if (picture) {
      setInterval(function () {
        picture.src = picture.src.split("?")[0] + "?t=" + Date.now();
      }, Number(picture.dataset.autoRefresh) * 1000);
    }
  });
  // What the person does counts as use: their writes (the kiosk's own reads do not).
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.requestConfig && event.detail.requestConfig.verb !== "get") reset();
  });
  document.addEventListener("kittylab:acted", reset);
})();
