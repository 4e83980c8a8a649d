"""The console's prints page in a real browser (issue 17, item 4), on the shared console
lab (``console_lab.py``; its simulated printers run 40 times faster than real time).

An engineer queues a G-code file (with an embedded thumbnail) from the page, follows it on
the printer's card to done with its progress bar moving and its preview shown, and
confirms the bed clear; a remote console sees the same page without any action."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from typing import Any

import pytest

from tests.e2e.console_lab import ELSEWHERE, Lab, _context, _enrol, _shot, needs_chromium

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

PRINTER = "prusa-mk4"
STATE: dict[str, Any] = {}


def _png(width: int, height: int) -> bytes:
    """A small orange PNG (a part's silhouette is not needed to prove it is shown)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\xf0\x80\x20" * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _gcode_with_thumbnail() -> bytes:
    """G-code as PrusaSlicer writes it: the preview as base64 comment lines at the top."""
    encoded = base64.b64encode(_png(64, 48)).decode()
    lines = [encoded[i : i + 78] for i in range(0, len(encoded), 78)]
    head = [f"; thumbnail begin 64x48 {len(encoded)}", *(f"; {line}" for line in lines)]
    head.append("; thumbnail end")
    moves = ["G28", "M104 S215", "M140 S60", *(f"G1 X{10 + i} Y{10 + i} F3000" for i in range(40))]
    return ("\n".join([*head, "; a bracket, sliced", *moves]) + "\n").encode()


def _card(page: Any) -> Any:
    return page.locator(f'section.printer[data-printer="{PRINTER}"]')


def test_a_print_is_queued_followed_to_done_and_its_bed_cleared(lab: Lab, browser: Any) -> None:
    page = _context(browser).new_page()
    _enrol(lab, page, "erin")  # an engineer: queues prints, confirms bed clears
    page.get_by_role("link", name="Prints").click()
    page.wait_for_url(lab.url + "/prints")
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    card = _card(page)
    assert card.locator(".bed-clear").count() == 0

    card.locator("input[type=file]").set_input_files(
        {"name": "bracket.gcode", "mimeType": "text/x-gcode", "buffer": _gcode_with_thumbnail()}
    )
    card.get_by_role("button", name="Queue print").click()
    card.locator(".result .outcome.ok").wait_for(timeout=15_000)
    assert "bracket.gcode" in card.locator(".result").inner_text()

    # The job reaches the printer; its preview is the G-code's own thumbnail.
    job = card.locator(".current-job")
    job.wait_for(timeout=30_000)
    assert "bracket.gcode" in job.inner_text()
    preview = job.locator("img.preview")
    preview.wait_for()
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 64", arg=preview.element_handle()
    )

    # The bar moves as the printer reports, until the job is done.
    seen: list[float] = []
    shot = False
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if card.locator(".history .outcome-completed").count():
            break
        bar = card.locator("progress.print-progress")
        if bar.count():
            value = float(bar.get_attribute("value") or 0)
            if not seen or value != seen[-1]:
                seen.append(value)
            if not shot and 0.3 < value < 0.8:
                assert card.locator(".time-left").count() == 1
                _shot(page, "prints")
                shot = True
        page.wait_for_timeout(200)
    assert card.locator(".history .outcome-completed").count() == 1, seen
    moving = [v for v in seen if 0 < v < 1]
    assert len(moving) >= 3 and moving == sorted(moving), seen

    # Done: the queue waits for the bed; confirming it is one tap.
    bed = card.locator(".bed-clear")
    bed.wait_for(timeout=10_000)
    card.get_by_role("button", name="✓ Confirm bed clear").click()
    card.locator(".result .outcome.ok").filter(has_text="Bed clear").wait_for(timeout=10_000)
    bed.wait_for(state="detached", timeout=10_000)
    assert "bed cleared" in card.locator(".history .outcome-completed").inner_text()
    STATE["erin"] = page


def test_a_remote_console_follows_prints_without_actions(lab: Lab, browser: Any) -> None:
    remote = _context(browser, origin=ELSEWHERE)
    remote.add_cookies(STATE["erin"].context.cookies())
    page = remote.new_page()
    page.goto(lab.url + "/prints")
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    assert "Read-only here" in page.locator(".note.remote").inner_text()
    assert page.locator("section.printer").count() >= 3
    assert page.locator("form.queue-form").count() == 0
    assert page.locator("section.printer button").count() == 0
    assert "completed" in _card(page).locator(".history").inner_text()
    remote.close()
