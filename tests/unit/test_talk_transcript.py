"""How the talk page reads a message's text (issue 17, item 3): its links, and the
pictures a camera's answer or a snapshot's outcome points at."""

from __future__ import annotations

from kittylab.web.talk import Segment, pictures, segments, title


def test_a_camera_answers_snapshot_link_is_a_link_and_a_picture() -> None:
    text = (
        "Farm camera's latest snapshot (print monitoring, 2 min ago): "
        "/api/fabrication/jobs/0192e0a4-8f6e-7a51-9d1e-2f4c8b7a6d10/snapshots/frame-3.jpg."
    )
    parts = segments(text)
    link = "/api/fabrication/jobs/0192e0a4-8f6e-7a51-9d1e-2f4c8b7a6d10/snapshots/frame-3.jpg"
    assert parts[1] == Segment(link, link)
    assert parts[-1] == Segment(".")  # the sentence's full stop stays outside the link
    assert "".join(p.text for p in parts) == text
    assert pictures(parts, {}) == (link,)


def test_a_cameras_own_snapshot_url_is_a_picture_and_a_page_link_is_not() -> None:
    parts = segments(
        "Laser cam took a snapshot: http://10.0.4.20:8080/snapshot (see "
        "https://docs.example.org/laser-room)"
    )
    assert [p.href for p in parts if p.href] == [
        "http://10.0.4.20:8080/snapshot",
        "https://docs.example.org/laser-room",
    ]
    assert pictures(parts, {}) == ("http://10.0.4.20:8080/snapshot",)


def test_a_picture_in_the_details_is_shown_once() -> None:
    link = "/api/artifacts/snapshots/cam.png"
    parts = segments(f"Here it is: {link}")
    assert pictures(parts, {"snapshot": link}) == (link,)
    assert pictures((), {"picture": "javascript:alert(1)"}) == ()


def test_words_that_look_like_paths_are_not_links() -> None:
    assert all(p.href is None for p in segments("the file is at a/api/b and /tmp/x.png"))
    assert segments("") == ()


def test_a_conversation_is_named_by_its_first_request_cut_short() -> None:
    assert title("turn on   the farm lights") == "turn on the farm lights"
    long = title("please " * 20)
    assert len(long) == 60 and long.endswith("…")
    assert title(None) == "(nothing said yet)"
