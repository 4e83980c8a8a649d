"""A wall terminal in a real browser (issue 18, item 3), on the shared console lab
(``console_lab.py``): a tablet opens ``/terminal`` and shows a code; an admin pairs it to
the laser room from the console; the tablet then shows that zone only, and an operator's
security key (Chromium's virtual USB authenticator) taps in: a ``terminal`` presence in
the laser room, the zone's stop and push-to-talk as that person, and check-out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.console_lab import Lab, _axe, _context, _enrol, _shot, needs_chromium

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium


def _newest_presence(lab: Lab, page: Any, zone_id: str) -> dict[str, Any]:
    answer = page.request.get(f"{lab.url}/api/presence?zoneId={zone_id}&limit=1")
    assert answer.ok, answer.text()
    items: list[dict[str, Any]] = answer.json()["items"]
    assert items, "no presence recorded"
    return items[0]


def test_a_paired_terminal_shows_its_zone_and_a_key_tap_checks_in(lab: Lab, browser: Any) -> None:
    tablet = _context(browser).new_page()
    # Owen's security key is enrolled the usual way (his link, on this tablet), then he
    # signs out: the tablet's browser holds no one's session when it becomes a terminal.
    _enrol(lab, tablet, "terminal-tap", transport="usb")
    tablet.get_by_role("button", name="Sign out").click()
    tablet.wait_for_url(lab.url + "/sign-in")
    tablet.goto(lab.url + "/terminal")
    code = tablet.locator("#pair-code").inner_text()
    assert len(code) == 9 and code[4] == "-", code
    _shot(tablet, "terminal-waiting")

    admin = _context(browser).new_page()
    _enrol(lab, admin, "terminal-admin")  # Ada, an admin
    admin.get_by_role("link", name="Terminals").click()
    admin.wait_for_url(lab.url + "/terminals")
    zones = {z["name"]: z for z in admin.request.get(lab.url + "/api/zones").json()["items"]}
    laser = zones["laser-room"]["id"]
    admin.get_by_label("Code").fill(code.lower())
    admin.get_by_label("Zone").select_option(label="laser-room")
    admin.get_by_label("Name").fill("Laser room wall")
    admin.get_by_role("button", name="Pair").click()
    admin.get_by_text("Paired: Laser room wall").wait_for(timeout=5_000)
    assert admin.locator("tr[data-terminal='Laser room wall']").is_visible()
    _shot(admin, "terminals")

    # The tablet notices by itself (it asks every few seconds) and shows the laser room.
    tablet.get_by_role("heading", name="laser-room", level=1).wait_for(timeout=10_000)
    tablet.wait_for_selector("#live-status.fresh", timeout=10_000)
    shown = set(
        tablet.locator("[data-device]").evaluate_all("els => els.map(e => e.dataset.device)")
    )
    devices = admin.request.get(f"{lab.url}/api/devices?zoneId={laser}&limit=100").json()["items"]
    assert shown == {d["externalId"] for d in devices}, shown
    assert tablet.locator("nav[aria-label=Console]").count() == 0
    assert tablet.get_by_text("Stop laser-room").count() == 0  # nothing without a person
    _shot(tablet, "terminal-kiosk")
    _axe(tablet, "terminal kiosk")
    tablet.get_by_role("button", name="Dark theme").click()  # a dim room
    _axe(tablet, "terminal kiosk, dark")
    _shot(tablet, "terminal-kiosk-dark")
    tablet.get_by_role("button", name="Dark theme").click()  # back: a toggle

    # Owen taps his key: checked in by the terminal, and the tablet acts as him.
    tablet.get_by_role("button", name="Tap your security key to check in").click()
    tablet.get_by_text("is checked in here").wait_for(timeout=10_000)
    assert tablet.get_by_text("Owen Operator").first.is_visible()
    seen = _newest_presence(lab, admin, laser)
    assert (seen["source"], seen["status"]) == ("terminal", "present"), seen
    assert tablet.locator("summary", has_text="Stop laser-room").is_visible()
    _shot(tablet, "terminal-tapped-in")
    _axe(tablet, "terminal tapped in")
    # The zone's stop, as Owen (an operator may): two taps, like the floor's.
    tablet.locator("summary", has_text="Stop laser-room").click()
    tablet.get_by_role("button", name="Confirm: Stop laser-room").click()
    tablet.get_by_text("Stop sent:").wait_for(timeout=10_000)
    stops = admin.request.get(f"{lab.url}/api/audit?action=stop.requested&limit=100").json()
    assert "owen" in {e["actorUsername"] for e in stops["items"]}, stops

    tablet.get_by_role("button", name="Check out of laser-room").click()
    tablet.get_by_role("button", name="Tap your security key to check in").wait_for(timeout=10_000)
    seen = _newest_presence(lab, admin, laser)
    assert (seen["source"], seen["status"]) == ("terminal", "vacated"), seen
