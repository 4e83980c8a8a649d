"""The lean command path against real `kittylab serve` processes (issue 14): a command is
sent from the server right after its commit, and a server killed (SIGKILL) between that
commit and the send, or in the middle of a burst, loses none of the commands it answered
202 and sends none twice. A lab applied by another process is online within a second.

The database is the tests' own PostgreSQL, outside the server, so that it outlives the
kill and the test can hold a device's row lock — the one thing that keeps a command
between its commit and its claim long enough to kill the server there."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.db.tables import DeviceCommand, User
from kittylab.config import Settings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CommandStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity
from tests.e2e.test_serve import ROOT, Server, _cli, _free_port

DECIDED = (CommandStatus.ACKED.value, CommandStatus.FAILED.value)


@pytest.fixture
def lab_env(database: Database, database_url: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """The demo lab in the tests' database, the environment of a server on it, and
    Ada's (admin) token."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(ROOT / "examples" / "lab.yaml"), utcnow())
        ada = s.scalars(select(User).where(User.username == "ada")).one()
        token = identity.issue_token(s, ada).token
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KITTYLAB_")}
    env = {
        **clean,
        "KITTYLAB_DATABASE_URL": database_url,
        "KITTYLAB_DATA_DIR": str(tmp_path / "data"),
        "KITTYLAB_MQTT__EMBEDDED_PORT": str(_free_port()),
        "KITTYLAB_LOG_JSON": "false",
        "KITTYLAB_CAD__PREWARM": "false",
        "KITTYLAB_QUERY__MODEL__BACKEND": "none",
        "KITTYLAB_JOBS__SHUTDOWN_GRACE_SECONDS": "2",
        # A command sent just before a kill is never confirmed by the restarted simulator:
        # it fails after this long instead of 30 s.
        "KITTYLAB_COMMANDS__ACK_TIMEOUT_SECONDS": "4",
    }
    return env, token


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)


def _serve(env: dict[str, str], port: int, servers: list[Server]) -> Server:
    server = Server(env, port)
    servers.append(server)
    server.wait_ready()
    return server


def _devices(server: Server, auth: dict[str, str]) -> dict[str, dict[str, object]]:
    items = httpx.get(f"{server.url}/api/devices?limit=100", headers=auth, timeout=10).json()
    return {d["externalId"]: d for d in items["items"]}


def _online(server: Server, auth: dict[str, str], *external_ids: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        devices = _devices(server, auth)
        if all(devices.get(e, {}).get("onlineState") == "online" for e in external_ids):
            return
        assert time.monotonic() < deadline, f"not online in {within} s: {external_ids}"
        time.sleep(0.05)


class Witness:
    """Every command message on the bus, seen as KittyLab's service (reconnecting to the
    next server's embedded broker after a kill)."""

    def __init__(self, data_dir: str, port: int) -> None:
        settings = Settings(data_dir=Path(data_dir), _env_file=None)  # type: ignore[call-arg]
        own = bootstrap.bus_identities(settings).own(IdentityKind.SERVICE)
        self.seen: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lean-witness")
        self._client.username_pw_set(own.username, own.password)
        self._client.on_connect = lambda c, *_: c.subscribe("kitty/devices/+/cmd", qos=1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.connect_async("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen.append((message.topic.split("/")[2], json.loads(message.payload)))

    def payloads(self, device: str) -> list[object]:
        with self._lock:
            return [m.get("payload") for d, m in self.seen if d == device]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _command(database: Database, command_id: str) -> DeviceCommand:
    with database.unit_of_work() as s:
        command = s.get(DeviceCommand, UUID(command_id))
        assert command is not None, f"command {command_id} answered 202 is not stored"
        s.expunge(command)
        return command


def _until_decided(database: Database, ids: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        waiting = [i for i in ids if _command(database, i).status.value not in DECIDED]
        if not waiting:
            return
        assert time.monotonic() < deadline, f"{len(waiting)} commands still undecided"
        time.sleep(0.1)


def _sends(command: DeviceCommand) -> int:
    return sum(1 for h in command.status_history if h["status"] == "sent")


def test_a_server_killed_between_a_commands_commit_and_its_send_sends_it_once_on_restart(
    lab_env: tuple[dict[str, str], str],
    database: Database,
    database_url: str,
    servers: list[Server],
) -> None:
    env, token = lab_env
    auth = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    server = _serve(env, port, servers)
    _online(server, auth, "farm-lights", within=10)
    light = _devices(server, auth)["farm-lights"]["id"]
    witness = Witness(env["KITTYLAB_DATA_DIR"], int(env["KITTYLAB_MQTT__EMBEDDED_PORT"]))
    try:
        with psycopg.connect(libpq_url(database_url)) as blocker:
            # The claim takes the device's row lock before sending: held here, the
            # command stays committed and unsent for as long as the test wants.
            blocker.execute("SELECT 1 FROM devices WHERE id = %s FOR NO KEY UPDATE", (light,))
            accepted = httpx.post(
                f"{server.url}/api/device/{light}/command",
                headers=auth,
                timeout=10,
                json={"intent": "light_set_brightness", "payload": {"brightness": 37}},
            )
            assert accepted.status_code == 202, accepted.text
            command_id = accepted.json()["commandId"]
            time.sleep(0.3)  # the server's claim is now waiting on the lock
            assert _command(database, command_id).status is CommandStatus.PENDING
            server.process.kill()
            server.process.wait(timeout=10)
            blocker.rollback()
        assert witness.payloads("farm-lights") == []  # never sent

        server = _serve(env, port, servers)  # taken up at start, not at the next minute
        # The restarted server starts its simulator too: on a loaded machine that takes a
        # while, and the command waits for it within its confirmation time.
        _until_decided(database, [command_id], within=30)
        command = _command(database, command_id)
        assert command.status is CommandStatus.ACKED, command.failure_reason
        assert _sends(command) == 1
        # The stored state follows the light's report through the ingest's batch, so it
        # may trail the ack by a moment.
        deadline = time.monotonic() + 10
        while True:
            state = httpx.get(
                f"{server.url}/api/devices/{light}/state", headers=auth, timeout=10
            ).json()["state"]
            if state["brightness"] == 37 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert state["brightness"] == 37
        # The witness may reconnect to the new broker after the send: at most once, then.
        assert witness.payloads("farm-lights") in ([], [{"brightness": 37}])
    finally:
        witness.close()
    assert server.stop() == 0


def test_a_burst_interrupted_by_kill_9_loses_none_of_the_commands_answered_202(
    lab_env: tuple[dict[str, str], str], database: Database, servers: list[Server]
) -> None:
    env, token = lab_env
    auth = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    server = _serve(env, port, servers)
    lights = ["farm-lights", "bench-lights", "cnc-lights", "welding-lights"]
    _online(server, auth, *lights, within=10)
    ids = {name: _devices(server, auth)[name]["id"] for name in lights}
    accepted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(name: str) -> None:
        with httpx.Client(base_url=server.url, headers=auth, timeout=5) as http:
            level = 0
            while not stop.is_set():
                level = level % 90 + 1
                try:
                    r = http.post(
                        f"/api/device/{ids[name]}/command",
                        json={"intent": "light_set_brightness", "payload": {"brightness": level}},
                    )
                except httpx.HTTPError:
                    return  # the server is gone: whatever had no answer is not counted
                if r.status_code != 202:
                    continue
                command_id = r.json()["commandId"]
                with lock:
                    accepted.append(command_id)
                # One command per light at a time: a light's state confirms the newest
                # command only, and an older one overtaken would never be confirmed.
                try:
                    while http.get(f"/api/commands/{command_id}").json()["status"] not in DECIDED:
                        time.sleep(0.01)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=client, args=(name,)) for name in lights]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.process.kill()  # mid-burst: some committed, some claimed, some sent
    server.process.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(accepted) >= 2 * len(lights), "the burst did not get going"

    server = _serve(env, port, servers)
    _until_decided(database, accepted, within=20)
    outcomes: dict[str, int] = {}
    for command_id in accepted:
        command = _command(database, command_id)
        assert _sends(command) <= 1, f"{command_id} was sent twice"
        if command.status is CommandStatus.FAILED:
            # Only one sent just before the kill may fail (the restarted simulator does
            # not remember it), and it says why.
            assert command.failure_reason, command_id
        outcomes[command.status.value] = outcomes.get(command.status.value, 0) + 1
    reasons = {_command(database, i).failure_reason for i in accepted} - {None}
    assert outcomes.get("acked", 0) >= len(accepted) - len(lights), (outcomes, reasons)
    assert server.stop() == 0


def test_a_lab_applied_to_a_running_server_is_online_within_a_second(
    lab_env: tuple[dict[str, str], str], tmp_path: Path, servers: list[Server]
) -> None:
    env, token = lab_env
    auth = {"Authorization": f"Bearer {token}"}
    server = _serve(env, _free_port(), servers)
    lab = yaml.safe_load((ROOT / "examples" / "lab.yaml").read_text())
    lab["devices"].append(
        {"external_id": "new-lights", "kind": "light", "zone": "print-farm", "aliases": ["new"]}
    )
    changed = tmp_path / "lab.yaml"
    changed.write_text(yaml.safe_dump(lab, sort_keys=False))

    applied = _cli(env, "lab", "apply", str(changed))  # another process, as a user would
    assert applied.returncode == 0, applied.stderr
    started = time.monotonic()
    _online(server, auth, "new-lights", within=1.0)
    took = time.monotonic() - started
    assert took <= 1.0, took
    # And it takes a command at once, through the simulator's new bus rights.
    new = _devices(server, auth)["new-lights"]["id"]
    accepted = httpx.post(
        f"{server.url}/api/device/{new}/command",
        headers=auth,
        timeout=10,
        json={"intent": "light_on", "payload": {}},
    )
    assert accepted.status_code == 202, accepted.text
    command_url = f"{server.url}/api/commands/{accepted.json()['commandId']}"
    deadline = time.monotonic() + 10
    while httpx.get(command_url, headers=auth, timeout=10).json()["status"] != "acked":
        assert time.monotonic() < deadline, "the new light's command was not acked"
        time.sleep(0.1)
    assert server.stop() == 0
