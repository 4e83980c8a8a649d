// KittyLab console's service worker (issue 17: installable, works offline). It keeps the
// console's shell — its stylesheet, scripts, icons and the "reconnecting" page — for when
// the server cannot be reached; it never keeps pages or data (they are personal, and
// stale data on a safety console is worse than none). Version {{ asset_version }}: a new
// version of any file is a new worker, which replaces the old cache.
"use strict";
const CACHE = "kittylab-shell-{{ asset_version }}";
const SHELL = {{ shell | tojson }};

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.addAll(SHELL); }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n.startsWith("kittylab-shell-") && n !== CACHE; }).map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("fetch", function (event) {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // Pages from the server, always; the reconnecting shell when it does not answer.
    event.respondWith(fetch(request).catch(function () { return caches.match("/offline"); }));
  } else if (url.pathname.startsWith("/console/static/")) {
    // Versioned files (?v=…): the cached copy is the same file.
    event.respondWith(caches.match(request).then(function (hit) { return hit || fetch(request); }));
  }
  // Everything else (the API, live updates, fragments) goes to the network as usual.
});
