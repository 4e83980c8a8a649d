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
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest

from tests.e2e.test_serve import KITTYLAB, ROOT, Server, _free_port, server_env

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("KITTYLAB_CONSOLE_SHOTS")
    or Path(tempfile.gettempdir()) / "kittylab-console-shots"
)
LAB_NETWORK = "10.20.30.40"
ELSEWHERE = "203.0.113.7"
TABLET = {"width": 1280, "height": 800}
DESKTOP = {"width": 1920, "height": 1080}
LIVE_BUDGET_MS = 500

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/install-system-deps.sh)"
)

EXTRA_DEVICE = """devices:
  # A lamp that reports itself over MQTT (the console test publishes its state).
  - external_id: bench-lamp
    kind: light
    zone: electronics-bench
    integration: mqtt
    aliases: [bench lamp]
"""


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*KITTYLAB, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Lab:
    def __init__(
        self, env: dict[str, str], server: Server, lamp: dict[str, str], links: dict[str, str]
    ) -> None:
        self.env = env
        self.server = server
        self.url = server.url.replace("127.0.0.1", "localhost")
        self.lamp = lamp
        self.links = links
        """One enrolment link per person, from `kittylab users invite` on the host."""


def _invites(env: dict[str, str], *usernames: str) -> dict[str, str]:
    """`kittylab users invite` for each person, at once (each CLI start costs seconds)."""
    running = {
        name: subprocess.Popen(
            [*KITTYLAB, "users", "invite", name],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in usernames
    }
    links = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        links[name] = out.strip()
    return links


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("console")
    env = server_env(tmp)
    port = _free_port()
    env.update(
        {
            "KITTYLAB_HTTP__PORT": str(port),
            # Loopback is "the proxy"; the lab's network is 10/8 (see the module doc).
            "KITTYLAB_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32", "::1/128"]',
            "KITTYLAB_HTTP__TRUSTED_NETWORKS": '["10.0.0.0/8"]',
            "KITTYLAB_CONSOLE__LIVE_REFRESH_SECONDS": "0.5",
        }
    )
    manifest = tmp / "lab.yaml"
    text = (ROOT / "examples" / "lab.yaml").read_text()
    manifest.write_text(text.replace("devices:\n", EXTRA_DEVICE, 1))
    _cli(env, "lab", "apply", str(manifest))
    credential = _cli(env, "mqtt", "device", "bench-lamp")
    lamp = dict(line.split(": ", 1) for line in credential.splitlines() if ": " in line)
    server = Server(env, port)
    try:
        server.wait_ready()
        yield Lab(env, server, lamp, _invites(env, "olivia", "ada"))
    finally:
        # SIGTERM, so the embedded PostgreSQL stops with it.
        if server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield instance
        instance.close()


def _context(browser: Any, origin: str = LAB_NETWORK, size: dict[str, int] = TABLET) -> Any:
    return browser.new_context(viewport=size, extra_http_headers={"X-Forwarded-For": origin})


def _authenticator(page: Any) -> None:
    """A platform passkey authenticator for this page, touched automatically."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def _shot(page: Any, name: str, *, top: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("tablet", TABLET), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        if top:
            page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(150)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=False)
    page.set_viewport_size(TABLET)


def _enrol(lab: Lab, page: Any, username: str) -> None:
    _authenticator(page)
    page.goto(lab.links[username])
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lab.url + "/", timeout=15_000)
    page.wait_for_selector("#live-status.fresh", timeout=10_000)


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
