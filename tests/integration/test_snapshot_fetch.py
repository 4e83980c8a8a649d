"""The camera snapshot fetcher against a local HTTP camera (tests/peers/camera_peer.py)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kittylab.adapters.detectors.snapshots import HttpSnapshotSource
from kittylab.domain.errors import ValidationFailed
from kittylab.monitoring.ports import Snapshot, SnapshotSource, SnapshotUnavailable
from tests.peers.camera_peer import TINY_JPEG, CameraPeer


@pytest.fixture
def camera() -> Iterator[CameraPeer]:
    with CameraPeer() as c:
        yield c


def fetch(url: str, **options: Any) -> Snapshot:
    source: SnapshotSource = HttpSnapshotSource(**options)
    return asyncio.run(source.fetch(url))


def test_a_jpeg_snapshot_is_returned_with_its_media_type(camera: CameraPeer) -> None:
    url = camera.serve("/snapshot.jpg", TINY_JPEG, "image/jpeg; charset=binary")

    assert fetch(url) == Snapshot(TINY_JPEG, "image/jpeg")


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(
    camera: CameraPeer,
) -> None:
    camera.serve("/auth.jpg")
    url = camera.url("/auth.jpg").replace("http://", "http://viewer:cam-pass-77@")

    fetch(url)

    assert camera.authorizations[-1] == "Basic " + base64.b64encode(b"viewer:cam-pass-77").decode()
    camera.serve("/gone.jpg", status=404)
    with pytest.raises(SnapshotUnavailable) as e:
        fetch(camera.url("/gone.jpg").replace("http://", "http://viewer:cam-pass-77@") + "?k=s3")
    assert "cam-pass-77" not in str(e.value)
    assert "s3" not in str(e.value)


def test_redirects_are_followed_to_the_image(camera: CameraPeer) -> None:
    target = camera.serve("/still/current.png", b"\x89PNG\r\n\x1a\nrest", "image/png")
    url = camera.redirect("/snapshot", target)

    assert fetch(url) == Snapshot(b"\x89PNG\r\n\x1a\nrest", "image/png")


def test_a_redirect_to_another_host_is_not_followed(camera: CameraPeer) -> None:
    other = camera.serve("/admin.png", b"\x89PNG\r\n\x1a\nsecret", "image/png")
    url = camera.redirect("/snapshot", other.replace("127.0.0.1", "localhost"))

    with pytest.raises(SnapshotUnavailable, match="redirected to another host"):
        fetch(url)


def test_a_redirect_loop_is_unavailable(camera: CameraPeer) -> None:
    url = camera.redirect("/loop", "/loop")

    with pytest.raises(SnapshotUnavailable, match="redirected more than 3 times"):
        fetch(url)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/html", "answered text/html, not an image"),
        ("application/octet-stream", "not an image"),
        ("", "answered no content type, not an image"),
        ("multipart/x-mixed-replace; boundary=frame", "is a video stream"),
    ],
)
def test_an_answer_that_is_not_a_still_image_is_refused(
    camera: CameraPeer, content_type: str, message: str
) -> None:
    url = camera.serve("/page", b"<html>login</html>", content_type)

    with pytest.raises(SnapshotUnavailable, match=message):
        fetch(url)


def test_an_error_status_is_unavailable(camera: CameraPeer) -> None:
    url = camera.serve("/busy.jpg", b"busy", "image/jpeg", status=503)

    with pytest.raises(SnapshotUnavailable, match="answered HTTP 503"):
        fetch(url)


def test_an_image_declared_over_the_limit_is_refused(camera: CameraPeer) -> None:
    url = camera.serve("/big.jpg", b"\xff" * 2048)

    with pytest.raises(SnapshotUnavailable, match="larger than 1024 bytes"):
        fetch(url, max_bytes=1024)
    assert fetch(url, max_bytes=2048).data == b"\xff" * 2048


def test_an_image_without_a_length_is_cut_off_at_the_limit(camera: CameraPeer) -> None:
    url = camera.serve_without_length("/unframed.jpg", b"\xff" * 5000)

    with pytest.raises(SnapshotUnavailable, match="larger than 4096 bytes"):
        fetch(url, max_bytes=4096)
    assert len(fetch(url, max_bytes=5000).data) == 5000


def test_an_endless_image_stream_stops_at_the_limit_without_waiting(camera: CameraPeer) -> None:
    url = camera.serve_endless("/forever.jpg")
    started = time.monotonic()

    with pytest.raises(SnapshotUnavailable, match="larger than 1048576 bytes"):
        fetch(url, max_bytes=1 << 20, timeout=10)

    assert time.monotonic() - started < 5


def test_an_empty_image_is_unavailable(camera: CameraPeer) -> None:
    url = camera.serve("/empty.jpg", b"")

    with pytest.raises(SnapshotUnavailable, match="empty image"):
        fetch(url)


def test_a_camera_slower_than_the_timeout_is_unavailable_in_time(camera: CameraPeer) -> None:
    url = camera.serve("/slow.jpg", delay=5)
    started = time.monotonic()

    with pytest.raises(SnapshotUnavailable, match=r"did not arrive within 0.3 s"):
        fetch(url, timeout=0.3)

    assert time.monotonic() - started < 2


def test_an_unreachable_camera_is_unavailable(camera: CameraPeer) -> None:
    url = camera.url("/a.jpg")
    camera.stop()

    with pytest.raises(SnapshotUnavailable, match="could not be reached"):
        fetch(url, timeout=2)


@pytest.mark.parametrize(
    "bad", ["/snapshot.jpg", "rtsp://cam/stream", "file:///tmp/a.jpg", "http://"]
)
def test_a_snapshot_url_must_be_absolute_http(bad: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        fetch(bad)

    assert e.value.field == "snapshot_url"
