"""A local HTTP camera: still images at scripted paths, plus the awkward answers real
cameras give (redirects, HTML login pages, MJPEG streams, bodies that never end, silence).

Paths are scripted with ``serve`` (a complete answer), ``serve_endless`` (an ``image/jpeg``
body streamed without a length until the client hangs up), ``serve_without_length`` (a
body delimited by closing the connection) and ``redirect``; anything else is a 404.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.peers.http_peer import HttpPeer, send

# The smallest well-formed JPEG framing: start-of-image, a comment segment, end-of-image.
TINY_JPEG = b"\xff\xd8\xff\xfe\x00\x08kitty\x00\xff\xd9"


@dataclass(frozen=True)
class _Route:
    kind: str  # "fixed" | "endless" | "unframed" | "redirect"
    status: int = 200
    content_type: str = "image/jpeg"
    body: bytes = b""
    delay: float = 0.0
    location: str = ""


class CameraPeer(HttpPeer):
    def __init__(self) -> None:
        super().__init__(self._handle)
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self.authorizations: list[str | None] = []

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def serve(
        self,
        path: str,
        body: bytes = TINY_JPEG,
        content_type: str = "image/jpeg",
        status: int = 200,
        delay: float = 0.0,
    ) -> str:
        return self._add(path, _Route("fixed", status, content_type, body, delay))

    def serve_endless(self, path: str, content_type: str = "image/jpeg") -> str:
        return self._add(path, _Route("endless", content_type=content_type))

    def serve_without_length(self, path: str, body: bytes) -> str:
        return self._add(path, _Route("unframed", body=body))

    def redirect(self, path: str, location: str) -> str:
        return self._add(path, _Route("redirect", status=302, location=location))

    def _add(self, path: str, route: _Route) -> str:
        with self._lock:
            self._routes[path] = route
        return self.url(path)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        with self._lock:
            route = self._routes.get(path)
            self.authorizations.append(request.headers.get("Authorization"))
        if route is None:
            send(request, 404, b"<h1>not found</h1>", "text/html")
            return
        if route.delay and self.stopping.wait(route.delay):
            return
        if route.kind == "redirect":
            send(request, route.status, headers={"Location": route.location})
        elif route.kind == "endless":
            request.send_response(200)
            request.send_header("Content-Type", route.content_type)
            request.send_header("Connection", "close")
            request.end_headers()
            chunk = b"\x00" * 65536
            try:
                while not self.stopping.is_set():
                    request.wfile.write(chunk)
            except OSError:
                pass  # the client hung up, as it should once over its limit
            request.close_connection = True
        elif route.kind == "unframed":
            request.send_response(200)
            request.send_header("Content-Type", route.content_type)
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(route.body)
            request.close_connection = True
        else:
            send(request, route.status, route.body, route.content_type)
