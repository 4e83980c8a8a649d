"""Fetch a camera's snapshot as evidence for a print-monitoring event.

``HttpSnapshotSource.fetch(url)`` GETs the URL (credentials in the URL's user info are
sent as HTTP basic auth, as most IP cameras expect), follows up to three redirects on the
same scheme, host and port (never elsewhere: the URL was checked against the lab's
declared cameras) and returns the bytes when the answer is a 200 with an ``image/*``
content type of at most ``max_bytes``. The size is enforced while streaming, so an
endless MJPEG stream or a huge file never fills memory, and the whole fetch shares one
deadline. Like the detector client it ignores proxy environment variables and keeps URL
secrets out of its messages.
"""

from __future__ import annotations

import asyncio
import math

import httpx

from kittylab.adapters.detectors.outbound import public_url, require_http_url, tls_context
from kittylab.domain.camera_hosts import origin
from kittylab.domain.errors import ValidationFailed
from kittylab.monitoring.ports import Snapshot, SnapshotUnavailable

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 3


class HttpSnapshotSource:
    """``SnapshotSource`` over plain HTTP(S) (asynchronous). ``transport`` is the test
    seam."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValidationFailed("timeout", "must be a positive number of seconds")
        if max_bytes < 1:
            raise ValidationFailed("max_bytes", "must be positive")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._transport = transport

    async def fetch(self, url: str) -> Snapshot:
        """The image at ``url``. A URL that is not absolute http(s) raises
        ``ValidationFailed("snapshot_url", …)``; every other failure
        ``SnapshotUnavailable`` naming the camera by scheme, host and path."""
        target = require_http_url(url, "snapshot_url")
        name = f"the camera snapshot at {public_url(target)}"
        try:
            async with asyncio.timeout(self._timeout):
                async with httpx.AsyncClient(
                    transport=self._transport,
                    timeout=self._timeout,
                    follow_redirects=False,
                    trust_env=False,
                    verify=tls_context(),
                ) as client:
                    for _ in range(MAX_REDIRECTS + 1):
                        async with client.stream("GET", target) as response:
                            if not response.is_redirect:
                                return await self._read(response, name)
                            target = self._redirected(target, response, name)
                    raise httpx.TooManyRedirects("too many redirects")
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise SnapshotUnavailable(f"{name} did not arrive within {self._timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise SnapshotUnavailable(f"{name} could not be reached") from exc
        except httpx.TooManyRedirects as exc:
            raise SnapshotUnavailable(f"{name} redirected more than {MAX_REDIRECTS} times") from exc
        except httpx.HTTPError as exc:
            raise SnapshotUnavailable(f"{name} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _redirected(current: str, response: httpx.Response, name: str) -> str:
        """Where a redirect points, if it stays on the camera's origin: a snapshot URL is
        fetched only from a declared camera (``domain.camera_hosts``), and a redirect must
        not take the fetch anywhere else."""
        location = response.headers.get("location", "")
        following = str(httpx.URL(current).join(location))
        if origin(following) != origin(current):
            raise SnapshotUnavailable(f"{name} redirected to another host; not followed")
        return following

    async def _read(self, response: httpx.Response, name: str) -> Snapshot:
        if response.status_code != 200:
            raise SnapshotUnavailable(f"{name} answered HTTP {response.status_code}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type.startswith("multipart/"):
            raise SnapshotUnavailable(
                f"{name} is a video stream ({media_type}); give the camera's still-image URL"
            )
        if not media_type.startswith("image/"):
            raise SnapshotUnavailable(
                f"{name} answered {media_type or 'no content type'}, not an image"
            )
        too_big = SnapshotUnavailable(f"{name} is larger than {self._max_bytes} bytes")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise too_big
            chunks.append(chunk)
        if size == 0:
            raise SnapshotUnavailable(f"{name} answered an empty image")
        return Snapshot(data=b"".join(chunks), content_type=media_type)
