"""The web console's targets (issue 17), on a real ``kittylab serve`` with 200 devices.

The lab is the demo lab plus devices up to 200 (lights, relays and sensors that report
over MQTT, each with a stored state, and one light of a polled integration whose states
this script stores, as a poller in another process would). The server runs as the quick
start runs it (embedded PostgreSQL, embedded broker, workers, the simulated demo lab).
A console session of the admin (every action shown: the heaviest page) is made in the
database, as signing in with a passkey would.

- **First page load**: the floor in Debian's Chromium (Playwright), a new browser
  context each time (nothing cached): the navigation's ``loadEventEnd``, and until the
  live stream is open. Beside it, the same server's ``/healthz`` and the floor's HTML
  alone over HTTP.
- **State change on screen**: a state stored (the commit returns) → the tile on an open
  floor shows it (a ``MutationObserver`` in the page; one clock, one machine).
- **50 open live connections at idle**: the server's and PostgreSQL's CPU over a window
  with no console open, then with 50 SSE connections open (after their first burst), as a
  share of one core.

Run:  .venv/bin/python benchmarks/console_bench.py [--loads 20] [--changes 40] [--window 30]
Writes benchmarks/results/console_bench.json and prints it. Targets: first load ≤ 1 s
(p95), a stored state on screen ≤ 0.5 s (p95), 50 idle connections ≤ 5 % extra CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from common import ROOT, CpuMeter, free_port, percentiles, start_serve, wait_for_server

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.adapters.db.engine import Database, make_engine
from kittylab.adapters.db.tables import Device
from kittylab.api.web_auth import SESSION_COOKIE, limits
from kittylab.config import Settings
from kittylab.devices import telemetry
from kittylab.domain.clock import utcnow
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity, web_sessions

RESULTS = ROOT / "benchmarks" / "results" / "console_bench.json"
CHROMIUM = "/usr/bin/chromium"
DEVICES = 200
CONNECTIONS = 50
POLLED = "bench-polled-light"
TARGET_LOAD_MS = 1000
TARGET_CHANGE_MS = 500
TARGET_EXTRA_CPU_PERCENT = 5.0
KINDS = ("light", "power", "sensor")
ZONES = ("print-farm", "electronics-bench", "cnc-room", "laser-room", "welding-bay")


def _bench_lab(directory: Path) -> Path:
    lab = yaml.safe_load((ROOT / "examples" / "lab.yaml").read_text())
    extra = DEVICES - len(lab["devices"]) - 1
    lab["devices"] += [
        {
            "external_id": f"bench-{KINDS[n % 3]}-{n:03d}",
            "kind": KINDS[n % 3],
            "zone": ZONES[n % len(ZONES)],
            "integration": "mqtt",
            **({"attributes": {"measures": ["temperature", "humidity"]}} if n % 3 == 2 else {}),
        }
        for n in range(extra)
    ]
    # Polled, not told: its states come from a poll (this script stores them). The
    # server's own poller finds nothing at this address and stores nothing.
    lab["devices"].append(
        {
            "external_id": POLLED,
            "kind": "light",
            "zone": "print-farm",
            "integration": "homeassistant",
            "connection": {
                "url": "http://127.0.0.1:9",
                "token": "${BENCH_HA_TOKEN}",
                "entity_id": "light.x",
            },
        }
    )
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return path


def _state(kind: str, n: int) -> dict[str, Any]:
    if kind == "light":
        return {"on": n % 2 == 0, "brightness": 50}
    if kind == "power":
        return {"on": n % 3 == 0, "watts": 12.5}
    return {"temperature": {"value": 20 + n % 7, "unit": "°C"}, "humidity": 40}


def _prepare(database: Database, manifest: Path) -> tuple[str, UUID]:
    """The lab, every bench device's first state, and the admin's console session."""
    now = utcnow()
    with database.unit_of_work() as session:
        apply_manifest(session, load_manifest(manifest), now)
        devices = session.query(Device).all()
        events = [
            telemetry.IncomingEvent(d.id, None, telemetry.STATE_TOPIC, _state(d.kind.value, i), now)
            for i, d in enumerate(devices)
            if d.external_id.startswith("bench-")
        ]
        telemetry.store_stream(session, events, now)
        polled = next(d.id for d in devices if d.external_id == POLLED)
        admin = identity.find_user_by_username(session, "ada")
        assert admin is not None
        issued = web_sessions.start(
            session,
            admin.id,
            passkey_id=None,
            limits=limits(Settings(_env_file=None).console),
            now=now,  # type: ignore[call-arg]
        )
    return issued.token, polled


# --- first page load -------------------------------------------------------------------


def _page_loads(browser: Any, base: str, cookie: str, loads: int) -> dict[str, Any]:
    load_ms: list[float] = []
    html_ms: list[float] = []
    dom_ms: list[float] = []
    live_ms: list[float] = []
    transferred: list[int] = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": base}])
        page = context.new_page()
        page.goto(base + "/", wait_until="load")
        page.wait_for_selector("#live-status.fresh", timeout=20_000)
        timing = page.evaluate(
            """() => {
                const nav = performance.getEntriesByType("navigation")[0];
                const bytes = performance.getEntriesByType("resource")
                    .filter(r => /\\.(js|css)(\\?|$)/.test(r.name))
                    .reduce((sum, r) => sum + r.transferSize, 0);
                return {load: nav.loadEventEnd, html: nav.responseEnd,
                        dom: nav.domContentLoadedEventEnd, live: performance.now(), assets: bytes,
                        tiles: document.querySelectorAll("article.tile").length};
            }"""
        )
        assert timing["tiles"] == DEVICES, timing
        load_ms.append(timing["load"])
        html_ms.append(timing["html"])
        dom_ms.append(timing["dom"])
        live_ms.append(timing["live"])
        transferred.append(timing["assets"])
        context.close()
    return {
        "n": loads,
        "html_received": percentiles(html_ms, 1),
        "dom_content_loaded": percentiles(dom_ms, 1),
        "load_event": percentiles(load_ms, 1),
        "until_live": percentiles(live_ms, 1),
        "js_css_bytes_transferred": max(transferred),
    }


def _http(base: str, path: str, cookie: str | None, n: int) -> dict[str, Any]:
    samples = []
    cookies = {SESSION_COOKIE: cookie} if cookie else None
    with httpx.Client(base_url=base, cookies=cookies, timeout=30) as http:
        for i in range(n + 3):
            start = time.perf_counter()
            answer = http.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
            if i >= 3:
                samples.append((time.perf_counter() - start) * 1000)
    return {"n": n, **percentiles(samples, 2)}


# --- a stored state on screen ----------------------------------------------------------


def _changes(
    browser: Any, base: str, cookie: str, database: Database, polled: UUID, n: int
) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": base}])
    page = context.new_page()
    page.goto(base + "/")
    page.wait_for_selector("#live-status.fresh", timeout=20_000)
    page.evaluate(
        """(ext) => {
            const live = document.querySelector(`article.tile[data-device="${ext}"] .live`);
            window.seen = [];
            new MutationObserver(() => window.seen.push(
                {now: Date.now(), summary: live.querySelector(".summary").textContent})
            ).observe(live, {childList: true, subtree: true});
        }""",
        POLLED,
    )
    samples = []
    for i in range(n):
        brightness = 10 + i  # a new value every time
        with database.unit_of_work() as session:
            event = telemetry.IncomingEvent(
                polled, None, telemetry.STATE_TOPIC, {"on": True, "brightness": brightness}, None
            )
            telemetry.store_stream(session, [event], utcnow())
        stored = time.time() * 1000  # committed
        want = f"on · {brightness}%"
        page.wait_for_function(
            "(want) => window.seen.some(s => s.summary === want)", arg=want, timeout=10_000
        )
        shown = next(s for s in page.evaluate("window.seen") if s["summary"] == want)
        samples.append(shown["now"] - stored)
        time.sleep(0.3)
    context.close()
    return {"n": n, **percentiles(samples, 1)}


# --- idle connections ------------------------------------------------------------------


class Streams:
    """``count`` SSE connections held open in a thread of their own."""

    def __init__(self, base: str, cookie: str, count: int) -> None:
        self.base, self.cookie, self.count = base, cookie, count
        self.first_burst = [0] * count
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        limits_ = httpx.Limits(max_connections=self.count + 5)
        async with httpx.AsyncClient(
            base_url=self.base,
            cookies={SESSION_COOKIE: self.cookie},
            timeout=httpx.Timeout(10, read=None),
            limits=limits_,
        ) as client:
            tasks = [asyncio.create_task(self._one(client, n)) for n in range(self.count)]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient, n: int) -> None:
        async with client.stream("GET", "/console/events") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: device-"):
                    self.first_burst[n] += 1

    def start(self, within: float = 120) -> None:
        self._thread.start()
        deadline = time.monotonic() + within
        while min(self.first_burst) < DEVICES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"streams did not all open: {sorted(self.first_burst)[:5]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


def _cpu_share(cpu: CpuMeter, window: float) -> dict[str, float]:
    before = cpu.read()
    time.sleep(window)
    after = cpu.read()
    return {
        "server_percent_of_a_core": round((after[0] - before[0]) / window * 100, 2),
        "postgres_percent_of_a_core": round((after[1] - before[1]) / window * 100, 2),
    }


def _idle(base: str, cookie: str, cpu: CpuMeter, window: float) -> dict[str, Any]:
    quiet = _cpu_share(cpu, window)
    streams = Streams(base, cookie, CONNECTIONS)
    opened = time.perf_counter()
    streams.start()
    burst_s = time.perf_counter() - opened
    time.sleep(3)  # the last first bursts drain
    try:
        watched = _cpu_share(cpu, window)
    finally:
        streams.stop()
    extra = sum(watched.values()) - sum(quiet.values())
    return {
        "connections": CONNECTIONS,
        "window_seconds": window,
        "no_console_open": quiet,
        "with_connections_open": watched,
        "extra_percent_of_a_core": round(extra, 2),
        "opening_all_with_first_burst_seconds": round(burst_s, 2),
    }


def run(loads: int, changes: int, window: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            bootstrap.upgrade_database(url)
            database = Database(make_engine(url, pool_size=2))
            cookie, polled = _prepare(database, _bench_lab(Path(tmp)))
            port = free_port()
            env = {
                **os.environ,
                "KITTYLAB_DATABASE_URL": url,
                "KITTYLAB_DATA_DIR": str(Path(tmp) / "data"),
                "KITTYLAB_MQTT__EMBEDDED_PORT": str(free_port()),
                "KITTYLAB_QUERY__MODEL__BACKEND": "none",
                "KITTYLAB_CAD__PREWARM": "false",
                "KITTYLAB_LOG_LEVEL": "WARNING",
                "BENCH_HA_TOKEN": "not-a-token",
            }
            server, log = start_serve(env, port, Path(tmp))
            try:
                base = f"http://localhost:{port}"
                wait_for_server(base + "/healthz", server, log)
                cpu = CpuMeter(server.pid, Path(tmp) / "pg")
                time.sleep(5)  # start-up work (the fleet's first reports, jobs) settles
                idle = _idle(base, cookie, cpu, window)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
                    try:
                        page_load = _page_loads(browser, base, cookie, loads)
                        change = _changes(browser, base, cookie, database, polled, changes)
                    finally:
                        browser.close()
                html = _http(base, "/", cookie, loads)
                health = _http(base, "/healthz", None, loads)
            finally:
                server.terminate()
                server.wait(timeout=90)
                database.dispose()
        finally:
            pg.stop()
    return {
        "devices": DEVICES,
        "first_page_load_ms": page_load,
        "floor_html_over_http_ms": html,
        "healthz_same_server_ms": health,
        "stored_state_on_screen_ms": change,
        "idle_live_connections": idle,
        "targets": {
            "first_load_p95_ms": TARGET_LOAD_MS,
            "met_first_load": page_load["load_event"]["p95_ms"] <= TARGET_LOAD_MS,
            "state_on_screen_p95_ms": TARGET_CHANGE_MS,
            "met_state_on_screen": change["p95_ms"] <= TARGET_CHANGE_MS,
            "extra_cpu_percent_with_50_idle_connections": TARGET_EXTRA_CPU_PERCENT,
            "met_idle_cpu": idle["extra_percent_of_a_core"] <= TARGET_EXTRA_CPU_PERCENT,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=20, help="first page loads")
    parser.add_argument("--changes", type=int, default=40, help="stored states to follow")
    parser.add_argument("--window", type=float, default=30, help="CPU window, seconds")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = {
        "benchmark": "console",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": round(load_before, 2),
        },
        **run(args.loads, args.changes, args.window),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
