"""The real thing: `kittylab` processes on a fresh data directory with the embedded
PostgreSQL, driven over HTTP like an operator would."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
KITTYLAB = [sys.executable, "-m", "kittylab.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return server_env(tmp_path)


def server_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `kittylab` process with its own data directory under
    ``tmp_path`` and its own embedded broker port, fast intervals for tests."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KITTYLAB_")}
    return {
        **clean,
        "KITTYLAB_DATA_DIR": str(tmp_path / "data"),
        "KITTYLAB_MQTT__EMBEDDED_PORT": str(_free_port()),
        "KITTYLAB_LOG_JSON": "false",
        "KITTYLAB_NOTIFY__BASE_DELAY_SECONDS": "1",
        "KITTYLAB_NOTIFY__MAX_ATTEMPTS": "10",
        "KITTYLAB_NOTIFY__WEBHOOK_HOSTS": '["127.0.0.1"]',
        "KITTYLAB_SIMULATOR__REPORT_INTERVAL_SECONDS": "1",
        "KITTYLAB_JOBS__POLL_INTERVAL_SECONDS": "0.2",
        "KITTYLAB_JOBS__SHUTDOWN_GRACE_SECONDS": "5",
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KITTYLAB, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Server:
    """`kittylab serve` with its output in a file: a pipe nobody reads fills up after
    64 KiB of logs and then blocks the server in the middle of whatever it was doing."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(env["KITTYLAB_DATA_DIR"]).parent / f"serve-{port}-{time.monotonic_ns()}.log"
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [*KITTYLAB, "serve", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.output()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server did not become ready in 60 s: {self.output()[-4000:]}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            # The budget: uvicorn's 10 s graceful shutdown, the jobs' grace (5 s here), the
            # broker (5 s at most) and PostgreSQL's own shutdown checkpoint.
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server did not stop within 60 s of SIGTERM: {self.output()[-4000:]}"
            ) from None


@pytest.fixture
def serve(env: dict[str, str]) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()


class _Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hooks.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def _simulators(server: Server) -> list[psutil.Process]:
    """The server's simulator processes (``kittylab.cli.simulate``)."""
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if "kittylab.cli.simulate" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _embedded_postgres_running(data_dir: str) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(data_dir in part for part in cmdline):
            return True
    return False


def test_demo_lab_serves_18_devices_survives_restart_and_cleans_up(
    env: dict[str, str], serve: list[Server]
) -> None:
    applied = _cli(env, "lab", "apply", "examples/lab.yaml")
    assert applied.returncode == 0, applied.stderr
    token = _cli(env, "users", "token", "ada").stdout.strip()
    assert token.startswith("kl_")
    auth = {"Authorization": f"Bearer {token}"}

    port = _free_port()
    server = Server(env, port)
    serve.append(server)
    server.wait_ready()

    devices = httpx.get(server.url + "/api/devices?limit=100", headers=auth, timeout=10).json()[
        "items"
    ]
    assert len(devices) == 18
    assert {"prusa-mk4", "laser-power", "fume-sensor"} <= {d["externalId"] for d in devices}
    assert httpx.get(server.url + "/api/devices", timeout=10).status_code == 401

    # A second server on the same data directory refuses, clearly.
    second = _cli(env, "serve", "--port", str(_free_port()))
    assert second.returncode == 3
    assert "in use" in second.stderr

    # A notification accepted while its target is down is not lost across a restart.
    hook_port = _free_port()
    notification_url = _queue_webhook(
        server, auth, hook_port, "Print finished", "prusa-mk4 finished the bracket"
    )
    simulators = _simulators(server)
    assert len(simulators) == 1
    assert server.stop() == 0
    assert not _embedded_postgres_running(env["KITTYLAB_DATA_DIR"])
    assert not [p for p in simulators if p.is_running()], "the simulator outlived its server"

    _Hooks.received = []
    hooks = HTTPServer(("127.0.0.1", hook_port), _Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    try:
        server = Server(env, port)
        serve.append(server)
        server.wait_ready()
        assert _wait_for_status(notification_url, auth, "sent", 90) == "sent"
        assert len(_Hooks.received) == 1
        assert _Hooks.received[0]["title"] == "Print finished"
    finally:
        hooks.shutdown()
    assert server.stop() == 0
    assert not _embedded_postgres_running(env["KITTYLAB_DATA_DIR"])


def _queue_webhook(
    server: Server, auth: dict[str, str], hook_port: int, title: str, body: str
) -> str:
    """Queue a webhook notification through the API; returns its URL."""
    queued = httpx.post(
        server.url + "/api/notifications",
        headers=auth,
        timeout=10,
        json={
            "channel": "webhook",
            "recipient": f"json://127.0.0.1:{hook_port}/hook",
            "title": title,
            "body": body,
        },
    )
    assert queued.status_code == 202, queued.text
    return f"{server.url}/api/notifications/{queued.json()['id']}"


def _wait_for_status(url: str, auth: dict[str, str], wanted: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        status = httpx.get(url, headers=auth, timeout=10).json()["status"]
        if status == wanted:
            break
        time.sleep(0.5)
    return status


def test_a_killed_server_loses_nothing_and_cleans_up_on_the_next_stop(
    env: dict[str, str], serve: list[Server], tmp_path: Path
) -> None:
    assert _cli(env, "lab", "apply", "examples/lab.yaml").returncode == 0
    token = _cli(env, "users", "token", "ada").stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    port, hook_port = _free_port(), _free_port()
    server = Server(env, port)
    serve.append(server)
    server.wait_ready()

    # The simulated lab comes online and reports state.
    deadline = time.monotonic() + 30
    online: list[str] = []
    while time.monotonic() < deadline and len(online) < 18:
        devices = httpx.get(server.url + "/api/devices?limit=100", headers=auth, timeout=10).json()
        online = [d["externalId"] for d in devices["items"] if d["onlineState"] == "online"]
        time.sleep(0.5)
    assert len(online) == 18

    # The simulated lab is a process of its own (issue 14): killed, it is started again.
    lights = next(d for d in devices["items"] if d["externalId"] == "farm-lights")
    lights_state = f"{server.url}/api/devices/{lights['id']}/state"
    [simulator] = _simulators(server)
    simulator.kill()
    simulator.wait(timeout=10)
    last = httpx.get(lights_state, headers=auth, timeout=10).json()["reportedAt"]
    deadline = time.monotonic() + 30
    while httpx.get(lights_state, headers=auth, timeout=10).json()["reportedAt"] == last:
        assert time.monotonic() < deadline, "the simulator process was not restarted"
        time.sleep(0.1)
    [again] = _simulators(server)
    assert again.pid != simulator.pid

    # A command travels API → job → MQTT → device, and is acked on the device's own state.
    accepted = httpx.post(
        f"{server.url}/api/device/{lights['id']}/command",
        headers=auth,
        timeout=10,
        json={"intent": "light_set_brightness", "payload": {"brightness": 30}},
    )
    assert accepted.status_code == 202, accepted.text
    command_url = f"{server.url}/api/commands/{accepted.json()['commandId']}"
    assert _wait_for_status(command_url, auth, "acked", 30) == "acked"
    # The stored state follows the device's report (written in a batch after the bus
    # carried it), so it may trail the ack by a moment.
    deadline = time.monotonic() + 10
    while True:
        state = httpx.get(
            f"{server.url}/api/devices/{lights['id']}/state", headers=auth, timeout=10
        )
        if state.json()["state"] == {"on": True, "brightness": 30} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state.json()["state"] == {"on": True, "brightness": 30}

    # The same from a terminal: `kittylab send` follows the command to its outcome.
    cli_env = {**env, "KITTYLAB_URL": server.url, "KITTYLAB_TOKEN": token}
    sent = _cli(cli_env, "send", "bench-lights", "light_set_brightness", "brightness=40")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "acked" in sent.stdout
    refused = _cli(cli_env, "send", "prusa-mk4", "print_pause")
    assert refused.returncode == 1
    assert "Prusa is idle, not printing [HTTP 409]" in refused.stderr
    table = _cli(cli_env, "devices", "--kind", "light")
    assert table.returncode == 0, table.stderr
    assert "bench-lights" in table.stdout and "on 40%" in table.stdout

    # A print from a file: uploaded, queued, started on the printer by the worker.
    gcode = tmp_path / "bracket.gcode"
    gcode.write_text("G28\n" + "G1 X10 Y10\n" * 100)
    queued = _cli(cli_env, "print", str(gcode), "--on", "voron-24", "--no-follow")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "queued on voron-24" in queued.stdout
    deadline = time.monotonic() + 30
    listing = ""
    while time.monotonic() < deadline and "printing" not in listing:
        listing = _cli(cli_env, "jobs").stdout
        time.sleep(1)
    assert "voron-24" in listing and "bracket.gcode" in listing and "printing" in listing
    busy = _cli(cli_env, "bed-clear", "voron-24")
    assert busy.returncode == 1 and "is printing job" in busy.stderr
    free = _cli(cli_env, "bed-clear", "prusa-mk4")
    assert free.returncode == 0, free.stderr
    assert "confirmed clear" in free.stdout

    notification_url = _queue_webhook(
        server, auth, hook_port, "Spaghetti on the Voron", "voron-24 paused"
    )

    simulators = _simulators(server)
    assert simulators
    server.process.kill()  # no shutdown at all: as a power cut would
    server.process.wait(timeout=10)
    # No orphan: the simulator ends when its server does, however it ends.
    _, alive = psutil.wait_procs(simulators, timeout=15)
    assert alive == [], f"simulator processes outlived their server: {alive}"

    _Hooks.received = []
    hooks = HTTPServer(("127.0.0.1", hook_port), _Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    try:
        server = Server(env, port)
        serve.append(server)
        server.wait_ready()
        assert _wait_for_status(notification_url, auth, "sent", 90) == "sent"
        assert [m["title"] for m in _Hooks.received] == ["Spaghetti on the Voron"]
    finally:
        hooks.shutdown()
    assert server.stop() == 0
    assert not _embedded_postgres_running(env["KITTYLAB_DATA_DIR"])


def test_a_hazardous_unlock_waits_for_a_signed_approval_then_the_door_opens(
    env: dict[str, str], serve: list[Server], tmp_path: Path
) -> None:
    """The whole safety path with real processes: `kittylab send` is held, an admin
    registers Sam's OpenSSH key with `kittylab keys add`, Sam signs with
    `kittylab approve` (ssh-keygen -Y sign), and the worker then opens the door."""
    assert _cli(env, "lab", "apply", "examples/lab.yaml").returncode == 0
    olivia = _cli(env, "users", "token", "olivia").stdout.strip()
    sam = _cli(env, "users", "token", "sam").stdout.strip()
    key = tmp_path / "sam_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sam@lab", "-f", str(key)],
        check=True,
    )
    added = _cli(env, "keys", "add", "sam", str(key) + ".pub", "--name", "laptop")
    assert added.returncode == 0, added.stdout + added.stderr

    port = _free_port()
    server = Server(env, port)
    serve.append(server)
    server.wait_ready()
    as_olivia = {**env, "KITTYLAB_URL": server.url, "KITTYLAB_TOKEN": olivia}
    as_sam = {**env, "KITTYLAB_URL": server.url, "KITTYLAB_TOKEN": sam}
    auth = {"Authorization": f"Bearer {olivia}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        devices = httpx.get(server.url + "/api/devices?limit=100", headers=auth, timeout=10)
        door = next(d for d in devices.json()["items"] if d["externalId"] == "cnc-door")
        if door["onlineState"] == "online":
            break
        time.sleep(0.5)

    held = _cli(as_olivia, "send", "cnc-door", "door_unlock")
    assert held.returncode == 0, held.stdout + held.stderr
    assert "waiting for safety approval" in held.stdout
    assert "1 signed approval by safety" in held.stdout
    found = re.search(r"\(event\s+([0-9a-f-]{36})\)", held.stdout)
    assert found is not None, held.stdout
    event_id = found.group(1)

    refused = _cli(as_olivia, "approve", event_id, "--key", str(key), "--yes")
    assert refused.returncode == 1
    assert "cannot approve their own request" in refused.stderr

    # The CNC room requires PPE: the approval confirms what Sam wears.
    approved = _cli(
        as_sam, "approve", event_id, "--key", str(key), "--ppe", "safety_glasses", "--yes"
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    event = httpx.get(f"{server.url}/api/safety/events/{event_id}", headers=auth, timeout=10)
    command_url = f"{server.url}/api/commands/{event.json()['commandId']}"
    assert _wait_for_status(command_url, auth, "acked", 30) == "acked"
    state = httpx.get(f"{server.url}/api/devices/{door['id']}/state", headers=auth, timeout=10)
    assert state.json()["state"]["locked"] is False
    assert server.stop() == 0
