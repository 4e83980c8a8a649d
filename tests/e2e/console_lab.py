"""The console's browser-test lab, shared by every ``tests/e2e/test_console*.py`` module
(``conftest.py`` registers its fixtures): one `kittylab serve` with the demo lab on the
embedded PostgreSQL for the whole session, and Debian's chromium driven by Playwright.

The server sits "behind a proxy" on loopback (``trusted_proxies``), so each browser
context says where it comes from with ``X-Forwarded-For``: 10.x is the lab's network, a
public address is remote. That exercises the real rule (``api/networks.py``) with one
server. Passkeys come from Chromium's virtual authenticator (CDP ``WebAuthn``).
Screenshots go to a temporary folder, or to ``KITTYLAB_CONSOLE_SHOTS`` when set
(``KITTYLAB_CONSOLE_SHOTS=docs/console`` refreshes the docs' pictures)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_serve import KITTYLAB, ROOT, Server, _free_port, server_env

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("KITTYLAB_CONSOLE_SHOTS")
    or Path(tempfile.gettempdir()) / "kittylab-console-shots"
)
LAB_NETWORK = "10.20.30.40"
ELSEWHERE = "203.0.113.7"
TABLET = {"width": 1280, "height": 800}
DESKTOP = {"width": 1920, "height": 1080}

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/install-system-deps.sh)"
)

PEOPLE = ("olivia", "ada", "erin", "sam", "sasha", "dana", "owen", "dora", "abe")
"""Who gets an enrolment link: the floor's tests use olivia and ada, the prints' erin, the
safety desk's sam and sasha, the CAD studio's dana, the operations view's owen, the desk's
boards dora and abe."""
SECOND_LINKS = {
    "talk": "olivia",
    "talk-safety": "sam",
    "terminal-admin": "ada",
    "terminal-tap": "owen",
    "talk-terminal": "olivia",
}
"""Links for a second passkey, by key: the talk page's tests (an operator who talks, a
safety person who denies what she asked for) and the wall terminal's (an admin who pairs
it, an operator whose security key taps in on it) run in browsers of their own."""
EXTRA_USERS = """users:
  - username: dana
    display_name: Dana Designer
    roles: [engineer]
  - username: owen
    display_name: Owen Operator
    roles: [operator]
  # The safety desk's boards (test_console_safety_desk.py): a safety officer, and an
  # admin who is also a safety officer (sends a lab change, confirms Dora's key).
  - username: dora
    display_name: Dora Desk
    email: dora@lab.example
    roles: [safety]
  - username: abe
    display_name: Abe Admin
    email: abe@lab.example
    roles: [admin, safety]
"""
EXTRA_DEVICE = """devices:
  # A lamp that reports itself over MQTT (the console test publishes its state).
  - external_id: bench-lamp
    kind: light
    zone: electronics-bench
    integration: mqtt
    aliases: [bench lamp]
"""


def cli(env: dict[str, str], *args: str) -> str:
    """``kittylab ARGS`` against the lab's database; its output (fails the test otherwise)."""
    return _cli(env, *args)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*KITTYLAB, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Lab:
    def __init__(
        self,
        env: dict[str, str],
        server: Server,
        lamp: dict[str, str],
        links: dict[str, str],
        manifest: str,
    ) -> None:
        self.env = env
        self.server = server
        self.url = server.url.replace("127.0.0.1", "localhost")
        self.lamp = lamp
        self.links = links
        self.manifest = manifest
        """The lab's manifest as applied (the demo lab and the tests' people and lamp)."""
        """One enrolment link per person, from `kittylab users invite` on the host."""


def _invites(env: dict[str, str], people: dict[str, str]) -> dict[str, str]:
    """`kittylab users invite` for everyone at once (each CLI start costs seconds): a link
    per key of ``people``, for the username it names (a person may have two)."""
    keys, usernames = list(people), list(people.values())
    links = _cli(env, "users", "invite", *usernames).split()
    assert len(links) == len(usernames), links
    return dict(zip(keys, links, strict=True))


@pytest.fixture(scope="package")
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
            # A simulated print of 10 minutes takes 15 s: the prints test follows one whole.
            "KITTYLAB_SIMULATOR__SPEED": "40",
        }
    )
    manifest = tmp / "lab.yaml"
    text = (ROOT / "examples" / "lab.yaml").read_text()
    manifest.write_text(
        text.replace("devices:\n", EXTRA_DEVICE, 1).replace("users:\n", EXTRA_USERS, 1)
    )
    _cli(env, "lab", "apply", str(manifest))
    credential = _cli(env, "mqtt", "device", "bench-lamp")
    lamp = dict(line.split(": ", 1) for line in credential.splitlines() if ": " in line)
    server = Server(env, port)
    try:
        server.wait_ready()
        people = {name: name for name in PEOPLE} | SECOND_LINKS
        yield Lab(env, server, lamp, _invites(env, people), manifest.read_text())
    finally:
        # SIGTERM, so the embedded PostgreSQL stops with it.
        if server.process.poll() is None:
            server.stop()


# Package scope, not session: Playwright's sync API keeps an event loop running in the
# main thread while the browser is open, and every later test that calls asyncio.run()
# (most integration tests) would fail. The browser closes when tests/e2e is done.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        # WebGL (the CAD studio's 3D view) on SwiftShader: headless Chromium needs the
        # flag since version 144.
        instance = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--enable-unsafe-swiftshader"]
        )
        yield instance
        instance.close()


def _context(browser: Any, origin: str = LAB_NETWORK, size: dict[str, int] = TABLET) -> Any:
    return browser.new_context(viewport=size, extra_http_headers={"X-Forwarded-For": origin})


def _authenticator(page: Any, transport: str = "internal") -> None:
    """A passkey authenticator for this page, touched automatically: the platform's, or
    with ``transport="usb"`` a security key."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": transport,
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


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
AXE_IMPACTS = ("serious", "critical")


def _axe(page: Any, name: str, *, upstream: tuple[str, ...] = ()) -> None:
    """axe-core (vendored for the tests, ``scripts/refresh-web-assets.sh``) on the page as
    it is now: no serious or critical violation of WCAG 2.x A/AA or best practice.
    ``upstream``: rules a vendored page breaks by its own structure (say which, and why)."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async (off) => (await axe.run(document, {resultTypes: ["violations"],
                rules: Object.fromEntries(off.map(id => [id, {enabled: false}]))})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))""",
        list(upstream),
    )
    bad = [v for v in violations if v["impact"] in AXE_IMPACTS]
    assert not bad, (name, bad)


def _enrol(lab: Lab, page: Any, username: str, transport: str = "internal") -> None:
    _authenticator(page, transport)
    page.goto(lab.links[username])
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lab.url + "/", timeout=15_000)
    page.wait_for_selector("#live-status.fresh", timeout=10_000)
