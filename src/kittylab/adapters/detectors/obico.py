"""A client for Obico-compatible failure detectors (Obico's ``ml_api`` and work-alikes).

The protocol, as Obico's ``ml_api/server.py`` serves it:

- ``GET /p/?img=<image URL>``; the detector fetches the image itself and runs the model.
  With ``ML_API_TOKEN`` set on the server, the request needs
  ``Authorization: Bearer <token>`` (401 otherwise).
- 200 ``{"detections": [[label, confidence, [x_center, y_center, width, height]], …]}``,
  boxes in pixels of the image; an empty list for a clean frame.
- 400 ``{"detections": [], "message": …}`` when the image could not be fetched or decoded;
  422 when ``img`` is missing. Older servers answered 200 with an ``error`` key instead.
- ``GET /hc/`` answers ``ok`` when the model is loaded.

Every request runs in a fresh ``httpx.AsyncClient`` under one overall deadline
(``timeout`` seconds), so an instance holds no connection, is not tied to an event loop
and needs no closing; a frame every few seconds per printer makes connection reuse moot.
Proxy environment variables are ignored (``trust_env=False``): detectors and cameras are
on the lab network, and a proxy would see camera URLs. Failures become
``DetectorUnavailable`` (or ``DetectorCouldNotReadImage``) with messages that name the
detector by scheme, host and path only.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx

from kittylab.adapters.detectors.outbound import public_url, require_http_url, tls_context
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.print_monitoring import BoundingBox, Detection
from kittylab.monitoring.ports import DetectorCouldNotReadImage, DetectorUnavailable

# A detection list is a few hundred bytes; anything near this is not a detector talking.
MAX_RESPONSE_BYTES = 1 << 20
# Models report probabilities; float noise may put one a hair outside [0, 1].
_CONFIDENCE_SLACK = 1e-6


class ObicoDetector:
    """``FailureDetector`` over an Obico-compatible HTTP API (asynchronous).

    ``base_url`` is where the API is mounted (``http://ml-api:3333``); ``timeout`` bounds
    each call as a whole, including the detector's own fetch of the image and inference;
    ``auth_token`` is sent as a bearer token when given. ``transport`` is the test seam.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        auth_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = require_http_url(base_url, "detector.base_url")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValidationFailed("timeout", "must be a positive number of seconds")
        self._base = httpx.URL(base if base.endswith("/") else base + "/")
        self._name = f"the failure detector at {public_url(base)}"
        self._timeout = timeout
        self._headers = {"Accept": "application/json"}
        if auth_token:
            self._headers["Authorization"] = f"Bearer {auth_token}"
        self._transport = transport

    def __repr__(self) -> str:  # never show the token
        return f"ObicoDetector({public_url(str(self._base))!r}, timeout={self._timeout})"

    async def detect(self, image_url: str) -> list[Detection]:
        """The detections in the image at ``image_url``; see ``FailureDetector.detect``.
        A URL that is not absolute http(s) raises ``ValidationFailed("image_url", …)``."""
        image = require_http_url(image_url, "image_url")
        status, body = await self._get("p/", {"img": image})
        if status == 400:
            raise DetectorCouldNotReadImage(
                f"{self._name} could not fetch or decode the image at {public_url(image)} "
                "(HTTP 400); the camera's snapshot URL must be reachable from the detector"
            )
        self._raise_for_status(status)
        return self._parse_detections(body)

    async def check(self) -> None:
        """Return when the detector says its model is loaded (``GET /hc/`` → ``ok``);
        ``DetectorUnavailable`` otherwise."""
        status, body = await self._get("hc/", None)
        self._raise_for_status(status)
        if body.strip() != b"ok":
            raise DetectorUnavailable(f"{self._name} is up but reports its model is not loaded")

    async def _get(self, path: str, params: dict[str, str] | None) -> tuple[int, bytes]:
        url = self._base.join(path)
        try:
            async with asyncio.timeout(self._timeout):
                async with (
                    httpx.AsyncClient(
                        transport=self._transport,
                        timeout=self._timeout,
                        follow_redirects=False,
                        trust_env=False,
                        verify=tls_context(),
                    ) as client,
                    client.stream("GET", url, params=params, headers=self._headers) as response,
                ):
                    body = await _read_limited(response, MAX_RESPONSE_BYTES)
                    return response.status_code, body
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise DetectorUnavailable(
                f"{self._name} did not answer within {self._timeout:g} s"
            ) from exc
        except httpx.ConnectError as exc:
            raise DetectorUnavailable(f"{self._name} could not be reached") from exc
        except _ResponseTooLarge as exc:
            raise DetectorUnavailable(
                f"{self._name} sent more than {MAX_RESPONSE_BYTES} bytes; it is not a "
                "detection list"
            ) from exc
        except httpx.HTTPError as exc:
            raise DetectorUnavailable(f"{self._name} failed: {type(exc).__name__}") from exc

    def _raise_for_status(self, status: int) -> None:
        if status == 200:
            return
        if status in (401, 403):
            raise DetectorUnavailable(
                f"{self._name} refused the credentials (HTTP {status}); check its token"
            )
        if 300 <= status < 400:
            raise DetectorUnavailable(
                f"{self._name} redirected (HTTP {status}); give the API's own URL"
            )
        raise DetectorUnavailable(f"{self._name} answered HTTP {status}")

    def _parse_detections(self, body: bytes) -> list[Detection]:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DetectorUnavailable(f"{self._name} answered something that is not JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("detections"), list):
            raise DetectorUnavailable(f"{self._name} answered JSON without a 'detections' list")
        if document.get("error"):
            raise DetectorUnavailable(f"{self._name} reported an error analysing the image")
        detections = []
        for index, item in enumerate(document["detections"]):
            detection = _detection(item)
            if detection is None:
                raise DetectorUnavailable(
                    f"{self._name} answered a malformed detection at position {index}: "
                    "expected [label, confidence 0-1, [x, y, width, height]]"
                )
            detections.append(detection)
        return detections


class _ResponseTooLarge(Exception):
    pass


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _ResponseTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _ResponseTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _detection(item: Any) -> Detection | None:
    """One ``[label, confidence, [x, y, w, h]]`` item, or None when it is not one."""
    if not isinstance(item, list) or len(item) != 3:
        return None
    label, confidence, box = item
    if not isinstance(label, str) or not _number(confidence):
        return None
    if not isinstance(box, list) or len(box) != 4 or not all(_number(v) for v in box):
        return None
    if not -_CONFIDENCE_SLACK <= confidence <= 1 + _CONFIDENCE_SLACK:
        return None
    x, y, w, h = (float(v) for v in box)
    return Detection(
        label=label,
        confidence=min(1.0, max(0.0, float(confidence))),
        box=BoundingBox(x_center=x, y_center=y, width=w, height=h),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
