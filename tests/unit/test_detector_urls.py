"""URL checks and redaction shared by the detector client and the snapshot fetcher."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kittylab.adapters.detectors.obico import ObicoDetector
from kittylab.adapters.detectors.outbound import public_url, require_http_url
from kittylab.domain.errors import ValidationFailed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://cam.lab/snap.jpg", "http://cam.lab/snap.jpg"),
        (
            "https://viewer:s3cret@cam.lab:8443/snap.jpg?token=abc#x",
            "https://cam.lab:8443/snap.jpg",
        ),
        ("http://[fe80::1]:8080/still", "http://[fe80::1]:8080/still"),
        ("http://cam.lab:99999/x", "(malformed URL)"),
    ],
)
def test_public_url_keeps_only_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert public_url(url) == shown


@pytest.mark.parametrize(
    "url", ["cam.lab/snap.jpg", "rtsp://cam.lab/live", "http://", "http://[::1"]
)
def test_require_http_url_refuses_anything_but_absolute_http_without_echoing_it(url: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        require_http_url(url, "snapshot_url")

    assert str(e.value) == "snapshot_url: must be an absolute http:// or https:// URL"


def test_require_http_url_strips_surrounding_space() -> None:
    assert require_http_url("  https://cam.lab/a.jpg\n", "f") == "https://cam.lab/a.jpg"


@pytest.mark.parametrize("base", ["http://gw.lab/ml", "http://gw.lab/ml/"])
def test_a_detector_behind_a_path_prefix_is_called_under_that_prefix(base: str) -> None:
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"detections": []})

    detector = ObicoDetector(base, timeout=5, transport=httpx.MockTransport(answer))

    assert asyncio.run(detector.detect("http://cam.lab/a.jpg?t=1&u=2")) == []
    assert seen[0].path == "/ml/p/"
    assert seen[0].params["img"] == "http://cam.lab/a.jpg?t=1&u=2"
