"""The web console in a real browser (issue 17): Debian's chromium driven by Playwright,
against one `kittylab serve` with the demo lab on the embedded PostgreSQL.

The server sits "behind a proxy" on loopback (``trusted_proxies``), so each browser
context says where it comes from with ``X-Forwarded-For``: 10.x is the lab's network, a
public address is remote. That exercises the real rule (``api/networks.py``) with one
server. Passkeys come from Chromium's virtual authenticator (CDP ``WebAuthn``).

The tests share the server and run in order: enrol → sign in → act → watch → remote →
CSRF → docs → stop. Screenshots of each page at tablet and desktop sizes are taken on
every run, into a temporary folder; ``KITTYLAB_CONSOLE_SHOTS=docs/console`` writes them
over the README's (a test run leaves the checkout as it was)."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import paho.mqtt.publish as mqtt_publish

from tests.e2e.console_fixtures import (
    CHROMIUM,
    DESKTOP,
    ELSEWHERE,
    LAB_NETWORK,
    LIVE_BUDGET_MS,
    Lab,
    _authenticator,
    _context,
    _enrol,
    _shot,
    browser,
    lab,
    pytestmark,
)

__all__ = ["browser", "lab", "pytestmark"]  # fixtures and the skip mark, from the shared module


STATE: dict[str, Any] = {}


def test_an_invite_enrols_a_passkey_that_then_signs_in(lab: Lab, browser: Any) -> None:
    context = _context(browser)
    page = context.new_page()
    # The address the quick start prints is 127.0.0.1; the console moves to localhost,
    # where passkeys work.
    page.goto(lab.server.url + "/")
    assert page.url.startswith(lab.url + "/sign-in")
    _shot(page, "sign-in")

    link = lab.links["olivia"]
    _authenticator(page)
    page.goto(link)
    assert page.url == lab.url + "/enrol"  # the secret is off the address bar
    _shot(page, "enrol")
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lab.url + "/", timeout=15_000)
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    assert page.locator("section.zone").count() == 5

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lab.url + "/sign-in")
    assert page.goto(lab.url + "/sessions") is not None
    assert page.url.startswith(lab.url + "/sign-in")  # signed out for real
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(lab.url + "/", timeout=15_000)
    assert "Olivia" in page.locator(".who").inner_text()

    # The same link again is refused, in words.
    again = context.new_page()
    _authenticator(again)
    again.goto(link)
    again.get_by_role("button", name="Create my passkey").click()
    again.wait_for_selector("#message.error")
    assert "already used" in again.locator("#message").inner_text()
    again.close()
    STATE["olivia"] = page


def _tile(page: Any, external_id: str) -> Any:
    return page.locator(f'article.tile[data-device="{external_id}"]')


def _watch(page: Any, external_id: str) -> None:
    """Record in the page when the tile's summary changes, and the server's report time."""
    page.evaluate(
        """(ext) => {
            const live = document.querySelector(`article.tile[data-device="${ext}"] .live`);
            window.seen = [];
            new MutationObserver(() => {
                const at = live.querySelector("time[data-at]");
                window.seen.push({now: Date.now(), summary: live.querySelector(".summary").textContent,
                                  at: at ? Number(at.dataset.at) : null});
            }).observe(live, {childList: true, subtree: true});
        }""",
        external_id,
    )


def test_a_light_switched_in_one_console_is_acked_and_shows_in_another(
    lab: Lab, browser: Any
) -> None:
    page = STATE["olivia"]
    other = _context(browser, size=DESKTOP).new_page()
    _enrol(lab, other, "ada")
    STATE["ada"] = other
    tile = _tile(page, "farm-lights")
    now_on = tile.locator(".summary").inner_text().startswith("on")
    target = "off" if now_on else "on"
    _watch(other, "farm-lights")

    tile.get_by_role("button", name=target.capitalize(), exact=True).click()
    tile.locator(".outcome.ok").wait_for(timeout=15_000)
    assert "acked" in tile.locator(".outcome").inner_text()
    other.wait_for_function(
        "(t) => window.seen.some((s) => s.summary.startsWith(t))", arg=target, timeout=5_000
    )
    seen = other.evaluate("window.seen")
    first = next(s for s in seen if s["summary"].startswith(target))
    # From the device's report reaching the server to the other screen.
    assert first["now"] - first["at"] <= LIVE_BUDGET_MS, seen
    _shot(page, "floor")


def test_a_state_published_on_the_bus_appears_live(lab: Lab) -> None:
    page = STATE["ada"]
    _watch(page, "bench-lamp")
    sent = time.time() * 1000
    mqtt_publish.single(
        "kitty/devices/bench-lamp/state",
        json.dumps({"on": True, "brightness": 40}),
        hostname="127.0.0.1",
        port=int(lab.env["KITTYLAB_MQTT__EMBEDDED_PORT"]),
        auth={"username": lab.lamp["username"], "password": lab.lamp["password"]},
        retain=True,
    )
    page.wait_for_function(
        "() => window.seen.some((s) => s.summary.startsWith('on · 40%'))", timeout=5_000
    )
    first = next(s for s in page.evaluate("window.seen") if s["summary"].startswith("on · 40%"))
    assert first["now"] - sent <= LIVE_BUDGET_MS


def test_a_remote_console_reads_the_floor_but_shows_no_actions(lab: Lab, browser: Any) -> None:
    signed_in = STATE["olivia"].context.cookies()
    remote = _context(browser, origin=ELSEWHERE)
    remote.add_cookies(signed_in)
    page = remote.new_page()
    page.goto(lab.url + "/")
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
    assert "Read-only here" in page.locator(".note.remote").inner_text()
    assert page.locator("section.zone").count() == 5
    assert page.locator(".actions button").count() == 0
    assert page.locator("details.stop").count() == 0
    _shot(page, "floor-remote")
    # Pressing anyway (a crafted request with the page's own CSRF token) is refused.
    lights = page.locator('article.tile[data-device="farm-lights"]').get_attribute("id")
    device_id = lights.removeprefix("tile-") if lights else ""
    status, body = page.evaluate(
        """async (id) => {
            const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
            const r = await fetch(`/console/devices/${id}/command/light_on`,
                                  {method: "POST", headers: {"X-CSRF-Token": csrf}});
            return [r.status, await r.text()];
        }""",
        device_id,
    )
    assert status == 403
    assert "outside the lab's trusted networks" in body
    remote.close()


def test_a_write_without_the_csrf_token_is_refused(lab: Lab) -> None:
    page = STATE["olivia"]
    device_id = (_tile(page, "farm-lights").get_attribute("id") or "").removeprefix("tile-")
    results = page.evaluate(
        """async (id) => {
            const console_ = await fetch(`/console/devices/${id}/command/light_on`, {method: "POST"});
            const api = await fetch(`/api/device/${id}/command`, {method: "POST",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify({intent: "light_on"})});
            return [[console_.status, await console_.text()], [api.status, await api.text()]];
        }""",
        device_id,
    )
    for status, body in results:
        assert status == 403
        assert "CSRF" in body


def test_sessions_are_listed_and_the_docs_list_the_operations(lab: Lab) -> None:
    page = STATE["olivia"]
    page.goto(lab.url + "/sessions")
    assert page.locator("tbody tr").count() >= 1
    assert "this browser" in page.locator("tbody").inner_text()
    assert LAB_NETWORK in page.locator("tbody").inner_text()  # the client, not the proxy
    _shot(page, "sessions")
    page.goto(lab.url + "/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() > 50
    assert "Unable to render" not in page.content()
    _shot(page, "docs")


def test_a_zone_stop_takes_two_taps(lab: Lab) -> None:
    page = STATE["olivia"]
    page.goto(lab.url + "/")
    zone = page.locator('section.zone[data-zone="print-farm"]')
    zone.get_by_role("button", name="■ Stop print-farm").click()
    confirm = zone.get_by_role("button", name="Confirm: Stop print-farm")
    confirm.wait_for()
    _shot(page, "floor-stop-confirm", top=False)
    confirm.click()
    outcome = zone.locator(".zone-stop .outcome")
    outcome.wait_for(timeout=10_000)
    assert "Stop sent" in outcome.inner_text()
    # The stop is on the record like one from the API (read by the admin's console, with
    # the session cookie: the API takes it like a token).
    status, body = STATE["ada"].evaluate(
        """async () => {
            const r = await fetch("/api/audit?action=stop.requested");
            return [r.status, await r.json()];
        }"""
    )
    assert status == 200, body
    assert body["items"], body


def test_the_browser_is_debian_chromium() -> None:
    assert shutil.which("chromium") == CHROMIUM
