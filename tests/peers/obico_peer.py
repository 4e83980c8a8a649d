"""A protocol-level stand-in for Obico's ``ml_api`` (the failure-detection server).

It speaks the protocol of ``ml_api/server.py`` in TheSpaghettiDetective/obico-server:

- ``GET /p/?img=<url>`` → 200 ``{"detections": [[label, confidence, [xc, yc, w, h]], …]}``;
- with a token configured (the server's ``ML_API_TOKEN``), a request without
  ``Authorization: Bearer <token>`` gets an empty 401;
- no ``img`` parameter → 422 ``{"detections": [], "message": "Invalid request params: …"}``;
- an image it cannot fetch → 400 ``{"detections": [], "message": "Failed to get image …"}``
  (like the real server it fetches the image itself, with a 5 s read timeout);
- ``GET /hc/`` → ``ok``; ``/p`` without the slash → 308 to ``/p/`` (Flask's strict slashes).

There is no model: the detections for an image URL are scripted with ``script``; an image
that is fetched but not scripted is a clean frame. ``script_reply`` scripts a raw answer
(a status, a body, a delay) to exercise the client's error handling.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.peers.http_peer import HttpPeer, send

DetectionItem = tuple[str, float, tuple[float, float, float, float]]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    delay: float = 0.0


class ObicoPeer(HttpPeer):
    def __init__(self, token: str | None = None) -> None:
        super().__init__(self._handle)
        self.token = token
        self.seen_images: list[str] = []
        self._replies: dict[str, _Reply] = {}
        self._lock = threading.Lock()

    def script(self, image_url: str, detections: list[DetectionItem]) -> None:
        """Answer ``detections`` for ``image_url`` (without fetching it)."""
        payload = {"detections": [[label, conf, list(box)] for label, conf, box in detections]}
        self.script_reply(image_url, 200, json.dumps(payload).encode())

    def script_reply(
        self,
        image_url: str,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self._replies[image_url] = _Reply(status, body, content_type, delay)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        if parts.path == "/hc/":
            send(request, 200, b"ok", "text/html; charset=utf-8")
            return
        if parts.path == "/p":
            send(request, 308, headers={"Location": f"/p/?{parts.query}"})
            return
        if parts.path != "/p/":
            send(request, 404, b"not found", "text/plain")
            return
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            send(request, 401)
            return
        images = parse_qs(parts.query).get("img")
        if not images:
            self._json(request, 422, message=f"Invalid request params: {parts.query}")
            return
        image_url = images[0]
        with self._lock:
            self.seen_images.append(image_url)
            reply = self._replies.get(image_url)
        if reply is not None:
            if reply.delay and self.stopping.wait(reply.delay):
                return
            send(request, reply.status, reply.body, reply.content_type)
            return
        try:
            with urllib.request.urlopen(image_url, timeout=5) as response:
                response.read()
        except (OSError, ValueError) as exc:
            self._json(request, 400, message=f"Failed to get image {image_url} - {exc}")
            return
        self._json(request, 200)

    @staticmethod
    def _json(request: BaseHTTPRequestHandler, status: int, message: str | None = None) -> None:
        document: dict[str, object] = {"detections": []}
        if message is not None:
            document["message"] = message
        send(request, status, json.dumps(document).encode(), "application/json")
