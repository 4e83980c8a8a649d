"""The simulated cameras' pictures, served on loopback as an IP camera serves its snapshot
URL (issue 14).

``CameraStudio`` draws what a camera of the fleet sees (``camera_view``): on every request
for its live snapshot, and once per ``camera_snapshot`` command, when the still is kept
(the newest ``KEEP_STILLS`` per camera, in memory) and the camera reports where it is in
its state (``last_snapshot_url``). ``serve_cameras`` answers HTTP on loopback:

- ``GET /cameras/<external_id>/snapshot.png``: what the camera sees now (the URL
  KittyLab fetches a simulated camera's snapshot from: ``domain.simulated_lab``);
- ``GET /cameras/<external_id>/snapshots/<n>.png``: the still of its ``n``-th snapshot.

Anything else is a 404; only ``GET`` and ``HEAD`` are answered. The server reads at most
one request line and 8 KiB of headers per connection and closes it after answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from kittylab.domain.enums import DeviceKind
from kittylab.simulator.camera_view import render
from kittylab.simulator.devices import SimulatedCamera
from kittylab.simulator.fleet import SimulatedFleet

log = logging.getLogger(__name__)

KEEP_STILLS = 5
MAX_HEADER_BYTES = 8 * 1024
READ_TIMEOUT_SECONDS = 5.0
_LIVE = re.compile(r"/cameras/([A-Za-z0-9._:-]+)/snapshot\.png")
_STILL = re.compile(r"/cameras/([A-Za-z0-9._:-]+)/snapshots/([0-9]{1,9})\.png")


class CameraStudio:
    """Renders the fleet's cameras; ``base_url`` is where ``serve_cameras`` listens."""

    def __init__(self, fleet: SimulatedFleet, base_url: str, clock: Callable[[], datetime]) -> None:
        self._fleet = fleet
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._stills: dict[str, OrderedDict[int, bytes]] = {}
        fleet.snapshotter = self.capture

    def _camera(self, external_id: str) -> SimulatedCamera | None:
        simulator = self._fleet.devices.get(external_id)
        return simulator if isinstance(simulator, SimulatedCamera) else None

    async def capture(self, external_id: str) -> None:
        """Keep the still of the camera's newest snapshot and point its state at it."""
        camera = self._camera(external_id)
        spec = self._fleet.specs.get(external_id)
        if camera is None or spec is None:
            return
        number = camera.snapshots
        # The scene is read on the loop (the fleet changes there); only drawing moves off it.
        scene = self._fleet.zone_of(external_id)
        image = await asyncio.to_thread(render, spec, scene, self._clock())
        stills = self._stills.setdefault(external_id, OrderedDict())
        stills[number] = image
        while len(stills) > KEEP_STILLS:
            stills.popitem(last=False)
        camera.last_snapshot_url = f"{self.base_url}/cameras/{external_id}/snapshots/{number}.png"

    def still(self, external_id: str, number: int) -> bytes | None:
        stills = self._stills.get(external_id)
        return stills.get(number) if stills is not None else None

    async def answer(self, path: str) -> bytes | None:
        """The PNG at ``path``, or None (a 404)."""
        live = _LIVE.fullmatch(path)
        if live is not None:
            external_id = live.group(1)
            spec = self._fleet.specs.get(external_id)
            if spec is None or spec.kind is not DeviceKind.CAMERA:
                return None
            scene = self._fleet.zone_of(external_id)
            return await asyncio.to_thread(render, spec, scene, self._clock())
        still = _STILL.fullmatch(path)
        if still is not None:
            return self.still(still.group(1), int(still.group(2)))
        return None


async def serve_cameras(studio: CameraStudio, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` (loopback) and answer snapshot requests until closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                request = await reader.readline()
                total = len(request)
                while total <= MAX_HEADER_BYTES:
                    line = await reader.readline()
                    total += len(line)
                    if line in (b"\r\n", b"\n", b""):
                        break
            parts = request.decode("latin-1").split()
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            if total > MAX_HEADER_BYTES:
                await _respond(writer, 431, b"request header too large\n", "text/plain")
            elif method not in ("GET", "HEAD"):
                await _respond(writer, 405, b"only GET\n", "text/plain")
            else:
                body = await studio.answer(target.split("?", 1)[0])
                if body is None:
                    await _respond(writer, 404, b"no such camera or snapshot\n", "text/plain")
                else:
                    await _respond(writer, 200, body, "image/png", head=method == "HEAD")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("a simulated camera request failed")
            with contextlib.suppress(Exception):
                await _respond(writer, 500, b"the camera failed\n", "text/plain")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large", 500: "Error"}


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, *, head: bool = False
) -> None:
    header = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(header.encode("latin-1") + (b"" if head else body))
    await writer.drain()
