"""The console's talk page in a real browser (issue 17, item 3), on the shared console lab
(``console_lab.py``), in a Chromium of its own whose microphone is a file: espeak-ng
saying a request (``--use-file-for-fake-audio-capture``).

An operator types a request and sees the reply, then the device's outcome arrive on it;
a hazardous request shows that it is held, with its safety event, and turns to denied when
safety denies it; the conversation lists beside, resumes after a reload and follows what
another screen and another client (as ``kittylab shell --continue`` does) say in it; and a
push-to-talk turn is transcribed, answered on the page and spoken."""

from __future__ import annotations

import io
import re
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.console_lab import (
    CHROMIUM,
    LAB_NETWORK,
    SHOTS,
    TABLET,
    Lab,
    _context,
    _enrol,
    _shot,
    cli,
    needs_chromium,
)

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

SPOKEN = "turn off the farm lights"
PORTRAIT = {"width": 800, "height": 1280}
"""A 10" tablet held upright."""
STATE: dict[str, Any] = {}
CONVERSATION = re.compile(r"/talk/([0-9a-f-]{36})$")


def _spoken_wav(path: Path) -> float:
    """``SPOKEN`` by espeak-ng with half a second of silence around it, as 48 kHz 16-bit
    mono (what Chromium's fake capture plays best); returns its length in seconds."""
    spoken = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", SPOKEN],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    with wave.open(io.BytesIO(spoken)) as source:
        rate, frames = source.getframerate(), source.readframes(source.getnframes())
    samples = [
        int.from_bytes(frames[i : i + 2], "little", signed=True) for i in range(0, len(frames), 2)
    ]
    # Nearest-sample resampling is plenty for a recogniser listening at 16 kHz.
    out_rate = 48_000
    resampled = [samples[int(i * rate / out_rate)] for i in range(len(samples) * out_rate // rate)]
    pad = [0] * (out_rate // 2)
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in pad + resampled + pad)
    with wave.open(str(path), "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(out_rate)
        target.writeframes(pcm)
    return len(pcm) / 2 / out_rate


@pytest.fixture(scope="module")
def talk_browser(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package's Playwright, a Chromium with a microphone that says ``SPOKEN``."""
    wav = tmp_path_factory.mktemp("talk") / "spoken.wav"
    STATE["spoken_seconds"] = _spoken_wav(wav)
    instance = browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield instance
    instance.close()


def _say(page: Any, text: str) -> None:
    box = page.get_by_label("Tell the lab (type a request or a question)")
    box.fill(text)
    box.press("Enter")


def _conversation(page: Any) -> str:
    page.wait_for_url(CONVERSATION, timeout=15_000)
    found = CONVERSATION.search(page.url)
    assert found is not None
    return found.group(1)


def _reply_to(page: Any, text: str) -> Any:
    """The reply that follows the request ``text`` in the transcript."""
    request = page.locator("#transcript li.msg.request").filter(has_text=text).last
    request.wait_for(timeout=15_000)
    reply = request.locator("xpath=following-sibling::li[contains(@class, ' reply')][1]")
    reply.wait_for(timeout=15_000)
    return reply


def test_a_typed_request_is_answered_and_its_outcome_updates_the_reply(
    lab: Lab, talk_browser: Any
) -> None:
    page = _context(talk_browser).new_page()
    _enrol(lab, page, "talk")  # Olivia, an operator
    page.get_by_role("link", name="Talk").click()
    page.wait_for_url(lab.url + "/talk")
    assert "New conversation" in page.locator("#conversation-title").inner_text()

    _say(page, "turn on the farm lights")
    conversation = _conversation(page)
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    reply = _reply_to(page, "turn on the farm lights")
    assert "farm lights" in reply.inner_text().lower()
    # The reply says how its command stands, and changes when the lights confirm.
    reply.locator(".command-state.acked").wait_for(timeout=15_000)
    outcome = page.locator("#transcript li.msg.outcome").last
    outcome.wait_for(timeout=15_000)
    assert "farm lights" in outcome.inner_text().lower()
    assert "Done" in outcome.inner_text()
    assert page.get_by_label("Tell the lab (type a request or a question)").input_value() == ""

    # A hazardous request is held, with a link to its safety event; denied, it says so.
    _say(page, "unlock the cnc door")
    held = _reply_to(page, "unlock the cnc door").locator(".command-state.held")
    held.wait_for(timeout=15_000)
    link = held.get_by_role("link", name="Open its safety event")
    href = link.get_attribute("href") or ""
    assert href.startswith("/safety#event-"), href
    _shot(page, "talk")
    event_id = href.removeprefix("/safety#event-")

    desk = _context(talk_browser).new_page()
    _enrol(lab, desk, "talk-safety")  # Sam, safety
    desk.goto(lab.url + href)
    desk.locator(f"#event-{event_id}").wait_for()
    token = desk.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    denied = desk.request.post(
        f"{lab.url}/api/safety/events/{event_id}/deny",
        data={"reason": "not while the spindle is being serviced"},
        headers={"X-CSRF-Token": token},
    )
    assert denied.ok, denied.text()
    desk.close()
    _reply_to(page, "unlock the cnc door").locator(".command-state.denied").wait_for(timeout=15_000)
    STATE.update(page=page, conversation=conversation)


def test_the_conversation_lists_resumes_and_follows_other_screens(
    lab: Lab, talk_browser: Any
) -> None:
    page, conversation = STATE["page"], STATE["conversation"]
    page.reload()
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    listed = page.locator("#conversation-list a[aria-current=page]")
    assert listed.get_attribute("href") == f"/talk/{conversation}"
    assert "turn on the farm lights" in listed.inner_text()
    transcript = page.locator("#transcript")
    assert transcript.locator("li.msg.request").count() == 2
    assert transcript.locator("li.msg.outcome").count() == 2  # the lights, the denial
    assert transcript.locator(".command-state.acked").count() == 1

    # Another screen of the same person carries on in it: it shows here, live.
    other = page.context.new_page()
    other.goto(f"{lab.url}/talk/{conversation}")
    other.wait_for_selector("#live-status.fresh", timeout=10_000)
    _say(other, "turn off the farm lights")
    _reply_to(page, "turn off the farm lights").locator(".command-state.acked").wait_for(
        timeout=15_000
    )
    other.close()

    # Another client (as `kittylab shell --continue ID` does): /api/query in the same one.
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    answered = page.request.post(
        f"{lab.url}/api/query",
        data={"conversationId": conversation, "channel": "cli", "input": {"text": "help"}},
        headers={"X-CSRF-Token": token},
    )
    assert answered.ok, answered.text()
    shell = page.locator("#transcript li.msg.request", has_text="help").last
    shell.wait_for(timeout=15_000)
    assert "shell" in shell.inner_text()
    # Every message once, in order.
    ids = transcript.locator("li.msg").evaluate_all("(items) => items.map((li) => li.id)")
    assert len(ids) == len(set(ids)) and ids == sorted(ids), ids

    # A new conversation starts empty; the old one stays listed.
    page.get_by_role("link", name="+ New conversation").click()
    page.wait_for_url(lab.url + "/talk")
    assert page.locator("#transcript li").count() == 0
    assert page.locator(f'#conversation-list a[href="/talk/{conversation}"]').count() == 1


def test_push_to_talk_sends_speech_and_shows_the_transcript_and_reply(
    lab: Lab, talk_browser: Any
) -> None:
    page = STATE["page"]
    assert page.url == lab.url + "/talk"
    talk = page.get_by_role("button", name="Hold to talk")
    talk.click()  # a tap starts; the microphone plays the file from its start
    page.wait_for_selector("#push-to-talk[data-state=recording]", timeout=10_000)
    page.wait_for_function(
        "(s) => Number(document.getElementById('push-to-talk').dataset.seconds) >= s",
        arg=STATE["spoken_seconds"],
        timeout=20_000,
    )
    assert page.locator("#ptt-status.recording").count() == 1
    page.screenshot(path=str(SHOTS / "talk-recording-tablet.png"))
    page.locator("#push-to-talk").click()  # a second tap sends
    status = page.locator("#ptt-status.ok")
    status.wait_for(timeout=90_000)  # the first turn loads the speech model
    conversation = _conversation(page)  # the turn began a conversation
    heard = status.inner_text()
    assert "farm lights" in heard.lower(), heard
    request = page.locator("#transcript li.msg.request").first
    request.wait_for(timeout=15_000)
    assert "farm lights" in request.inner_text().lower()
    assert page.locator("#transcript li.msg.reply").count() >= 1
    audio = page.locator("#reply-audio")
    assert (audio.get_attribute("src") or "").startswith("/api/voice/replies/")
    assert page.locator(f'#conversation-list a[href="/talk/{conversation}"]').count() == 1
    assert "spoken" in request.inner_text()
    page.locator("#live-status.fresh").wait_for(timeout=10_000)
    _shot(page, "talk-voice")
    page.set_viewport_size(PORTRAIT)
    page.screenshot(path=str(SHOTS / "talk-voice-portrait.png"))
    page.set_viewport_size(TABLET)


def test_a_wall_terminal_talks_for_the_person_who_tapped_in(lab: Lab, talk_browser: Any) -> None:
    """The terminal's big push-to-talk button: a spoken request from the print farm's wall,
    made as Olivia (her security key tapped in), answered on the tablet."""
    context = talk_browser.new_context(
        viewport=TABLET, extra_http_headers={"X-Forwarded-For": LAB_NETWORK}
    )
    kiosk = context.new_page()
    _enrol(lab, kiosk, "talk-terminal", transport="usb")
    kiosk.get_by_role("button", name="Sign out").click()
    kiosk.wait_for_url(lab.url + "/sign-in")
    kiosk.goto(lab.url + "/terminal")
    code = kiosk.locator("#pair-code").inner_text()
    token = cli(lab.env, "users", "token", "ada", "--label", "talk-terminal").strip()
    admin = {"Authorization": f"Bearer {token}"}
    zones = kiosk.request.get(lab.url + "/api/zones", headers=admin).json()["items"]
    farm = next(z["id"] for z in zones if z["name"] == "print-farm")
    paired = kiosk.request.post(
        lab.url + "/api/terminals/pair", headers=admin, data={"code": code, "zoneId": farm}
    )
    assert paired.ok, paired.text()
    kiosk.get_by_role("heading", name="print-farm", level=1).wait_for(timeout=10_000)
    kiosk.get_by_role("button", name="Tap your security key to check in").click()
    kiosk.get_by_text("is checked in here").wait_for(timeout=10_000)

    kiosk.get_by_role("button", name="Hold to talk").click()
    kiosk.wait_for_selector("#push-to-talk[data-state=recording]", timeout=10_000)
    kiosk.wait_for_function(
        "(s) => Number(document.getElementById('push-to-talk').dataset.seconds) >= s",
        arg=STATE["spoken_seconds"],
        timeout=20_000,
    )
    kiosk.locator("#push-to-talk").click()
    status = kiosk.locator("#ptt-status.ok")
    status.wait_for(timeout=60_000)
    assert "farm lights" in status.inner_text().lower()
    answer = kiosk.locator("#talk-result")
    assert answer.inner_text().strip(), "no reply shown on the terminal"
    _shot(kiosk, "terminal-voice")
    context.close()
