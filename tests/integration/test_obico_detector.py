"""The Obico detector client against a protocol-level ml_api peer (tests/peers/obico_peer.py),
and the camera snapshot fetcher against a local HTTP camera (tests/peers/camera_peer.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest

from kittylab.adapters.detectors.obico import ObicoDetector
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.print_monitoring import (
    BoundingBox,
    Detection,
    DetectionState,
    Severity,
    update,
)
from kittylab.monitoring.ports import (
    DetectorCouldNotReadImage,
    DetectorUnavailable,
    FailureDetector,
)
from tests.peers.camera_peer import CameraPeer
from tests.peers.obico_peer import ObicoPeer

TOKEN = "ml-token-5f1e2d"


@pytest.fixture
def peer() -> Iterator[ObicoPeer]:
    with ObicoPeer() as p:
        yield p


@pytest.fixture
def camera() -> Iterator[CameraPeer]:
    with CameraPeer() as c:
        yield c


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_detect_returns_the_scripted_boxes_for_the_image_url(peer: ObicoPeer) -> None:
    image = "http://camera.lab/snapshot.jpg?frame=7"
    peer.script(
        image,
        [("failure", 0.69, (535.3, 474.9, 252.1, 138.7)), ("failure", 0.34, (349, 382, 164, 82))],
    )
    detector: FailureDetector = ObicoDetector(peer.base_url, timeout=5)

    detections = asyncio.run(detector.detect(image))

    assert detections == [
        Detection("failure", 0.69, BoundingBox(535.3, 474.9, 252.1, 138.7)),
        Detection("failure", 0.34, BoundingBox(349.0, 382.0, 164.0, 82.0)),
    ]
    assert peer.seen_images == [image]  # the query parameter arrived intact


def test_a_fetchable_image_without_failures_is_an_empty_list(
    peer: ObicoPeer, camera: CameraPeer
) -> None:
    image = camera.serve("/snapshot.jpg")

    assert asyncio.run(ObicoDetector(peer.base_url + "/", timeout=5).detect(image)) == []
    assert peer.seen_images == [image]


def test_the_token_is_sent_as_bearer_and_a_wrong_one_is_refused() -> None:
    with ObicoPeer(token=TOKEN) as peer:
        peer.script("http://camera.lab/a.jpg", [("failure", 0.5, (1, 2, 3, 4))])
        good = ObicoDetector(peer.base_url, timeout=5, auth_token=TOKEN)
        assert len(asyncio.run(good.detect("http://camera.lab/a.jpg"))) == 1

        wrong = ObicoDetector(peer.base_url, timeout=5, auth_token="not-" + TOKEN)
        with pytest.raises(DetectorUnavailable, match=r"refused the credentials \(HTTP 401\)") as e:
            asyncio.run(wrong.detect("http://camera.lab/a.jpg"))
        assert TOKEN not in str(e.value)
        assert TOKEN not in repr(good)


def test_an_image_the_detector_cannot_fetch_is_a_could_not_read_image_error(
    peer: ObicoPeer,
) -> None:
    image = closed_port_url() + "/snapshot.jpg?token=cam-secret-123"

    with pytest.raises(DetectorCouldNotReadImage, match="HTTP 400") as e:
        asyncio.run(ObicoDetector(peer.base_url, timeout=5).detect(image))

    assert isinstance(e.value, DetectorUnavailable)  # catching the base catches it
    assert "cam-secret-123" not in str(e.value)
    assert "/snapshot.jpg" in str(e.value)


def test_a_detector_slower_than_the_timeout_is_unavailable_within_the_timeout(
    peer: ObicoPeer,
) -> None:
    peer.script_reply("http://camera.lab/slow.jpg", 200, b'{"detections": []}', delay=5)
    started = time.monotonic()

    with pytest.raises(DetectorUnavailable, match=r"did not answer within 0.3 s"):
        asyncio.run(ObicoDetector(peer.base_url, timeout=0.3).detect("http://camera.lab/slow.jpg"))

    assert time.monotonic() - started < 2


def test_an_unreachable_detector_is_unavailable() -> None:
    base = closed_port_url()

    with pytest.raises(DetectorUnavailable, match="could not be reached"):
        asyncio.run(ObicoDetector(base, timeout=2).detect("http://camera.lab/a.jpg"))


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>gateway</html>", "not JSON"),
        (200, b'{"boxes": []}', "without a 'detections' list"),
        (200, b'[["failure", 0.5, [1, 2, 3, 4]]]', "without a 'detections' list"),
        (200, b'{"detections": [], "error": "cv2 failed"}', "reported an error"),
        (
            200,
            b'{"detections": [["failure", 1.5, [1, 2, 3, 4]]]}',
            "malformed detection at position 0",
        ),
        (200, b'{"detections": [["failure", "high", [1, 2, 3, 4]]]}', "malformed detection"),
        (200, b'{"detections": [["failure", 0.5, [1, 2, 3]]]}', "malformed detection"),
        (200, b'{"detections": [{"name": "failure", "confidence": 0.5}]}', "malformed detection"),
        (200, b'{"detections": [["failure", 0.5, [1, 2, 3, 4]], [0.4]]}', "at position 1"),
        (500, b"Internal Server Error", "answered HTTP 500"),
        (503, b"", "answered HTTP 503"),
        (422, b'{"detections": [], "message": "Invalid request params"}', "answered HTTP 422"),
    ],
)
def test_answers_outside_the_protocol_are_unavailable_with_a_clear_message(
    peer: ObicoPeer, status: int, body: bytes, message: str
) -> None:
    peer.script_reply("http://camera.lab/x.jpg", status, body)

    with pytest.raises(DetectorUnavailable, match=message) as e:
        asyncio.run(ObicoDetector(peer.base_url, timeout=5).detect("http://camera.lab/x.jpg"))

    assert type(e.value) is DetectorUnavailable


def test_an_oversized_answer_is_not_read_to_the_end(peer: ObicoPeer) -> None:
    huge = b'{"detections": [' + b'["failure", 0.5, [1, 2, 3, 4]],' * 40000 + b"[]]}"
    peer.script_reply("http://camera.lab/huge.jpg", 200, huge)

    with pytest.raises(DetectorUnavailable, match="sent more than 1048576 bytes"):
        asyncio.run(ObicoDetector(peer.base_url, timeout=5).detect("http://camera.lab/huge.jpg"))


def test_a_redirect_is_reported_not_followed(peer: ObicoPeer) -> None:
    peer.script_reply("http://camera.lab/moved.jpg", 302, b"")

    with pytest.raises(DetectorUnavailable, match=r"redirected \(HTTP 302\)"):
        asyncio.run(ObicoDetector(peer.base_url, timeout=5).detect("http://camera.lab/moved.jpg"))


def test_health_check_passes_when_the_model_is_loaded_and_fails_when_unreachable(
    peer: ObicoPeer,
) -> None:
    asyncio.run(ObicoDetector(peer.base_url, timeout=5).check())

    with pytest.raises(DetectorUnavailable, match="could not be reached"):
        asyncio.run(ObicoDetector(closed_port_url(), timeout=2).check())


@pytest.mark.parametrize("bad", ["camera.lab/a.jpg", "file:///etc/passwd", "ftp://cam/a.jpg", ""])
def test_an_image_url_must_be_absolute_http(peer: ObicoPeer, bad: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        asyncio.run(ObicoDetector(peer.base_url, timeout=5).detect(bad))

    assert e.value.field == "image_url"
    assert peer.seen_images == []


def test_scripted_spaghetti_from_the_detector_escalates_warning_then_failure(
    peer: ObicoPeer,
) -> None:
    clean = "http://camera.lab/clean.jpg"
    spaghetti = "http://camera.lab/spaghetti.jpg"
    peer.script(clean, [])
    peer.script(
        spaghetti, [("failure", 0.9, (300, 300, 120, 80)), ("failure", 0.8, (10, 10, 5, 5))]
    )
    detector = ObicoDetector(peer.base_url, timeout=5)

    async def watch() -> list[Severity]:
        state = DetectionState()
        seen = []
        for frame in [clean] * 40 + [spaghetti] * 6:
            state, verdict = update(state, await detector.detect(frame))
            seen.append(verdict.severity)
        return seen

    severities = asyncio.run(watch())

    assert set(severities[:40]) == {Severity.OK}
    escalation = [s for s in severities[40:] if s is not Severity.OK]
    assert escalation[0] is Severity.WARNING
    assert escalation[-1] is Severity.FAILURE
    assert json.dumps(escalation)  # StrEnum values serialize for the event details
