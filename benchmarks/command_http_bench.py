"""Device command over HTTP → its MQTT ``cmd`` message, with 16 concurrent clients.

A real ``kittylab serve`` (embedded PostgreSQL, embedded MQTT broker, background workers,
the simulated lab) gets 16 extra simulated lights, one per client. Each client, in a
closed loop, posts ``light_set_brightness`` for its own light and waits until the command
appears on ``kitty/devices/<light>/cmd``, seen by a separate MQTT subscriber: the latency
is from the start of the POST to that message. ``/healthz`` of the same server under the
same number of clients is measured beside it as the floor of the server itself.

Run:  .venv/bin/python benchmarks/command_http_bench.py [--requests N]
Writes benchmarks/results/command_http_bench.json and prints it. Targets (issue 14), as
shares of ``/healthz`` of the same server in the same run: at 16 clients, commands/s ≥ 0.4 ×
``/healthz`` req/s; at 1 client, p95 ≤ 4 × ``/healthz`` p95. The server's CPU per request
(and PostgreSQL's) is measured too: unlike latency it does not depend on what else the
machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from common import ROOT, CpuMeter, free_port, percentiles, start_serve, wait_for_server

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.config import Settings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity

RESULTS = ROOT / "benchmarks" / "results" / "command_http_bench.json"
CLIENTS = 16
"""The target's concurrency; the lab has one light per client up to this many."""
TARGET_THROUGHPUT_RATIO = 0.4
TARGET_P95_RATIO_ONE_CLIENT = 4.0
WARM_UP = 3


def _bench_lab(directory: Path) -> Path:
    """The demo lab plus one light per client, so each client owns a device."""
    lab = yaml.safe_load((ROOT / "examples" / "lab.yaml").read_text())
    lab["devices"] += [
        {
            "external_id": f"bench-light-{n:02d}",
            "kind": "light",
            "zone": "print-farm",
            "aliases": [f"bench light {n}"],
        }
        for n in range(CLIENTS)
    ]
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return path


class CommandWatcher:
    """Sees every ``…/cmd`` message and hands it to the client that owns the device."""

    def __init__(self, port: int, credential: tuple[str, str] | None = None) -> None:
        self.inboxes: dict[str, queue.SimpleQueue[tuple[Any, float]]] = {
            f"bench-light-{n:02d}": queue.SimpleQueue() for n in range(CLIENTS)
        }
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cmd-bench")
        self._client.on_message = self._on_message
        if credential is not None:  # the embedded broker admits only the lab's identities
            self._client.username_pw_set(*credential)
        self._client.connect("127.0.0.1", port)
        self._client.subscribe("kitty/devices/+/cmd", qos=0)
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.perf_counter()
        device = message.topic.split("/")[2]
        inbox = self.inboxes.get(device)
        if inbox is not None:
            inbox.put((json.loads(message.payload).get("payload"), arrived))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _commands(
    base: str,
    token: str,
    ids: dict[str, str],
    watcher: CommandWatcher,
    rounds: int,
    clients: int,
    cpu: CpuMeter | None = None,
) -> dict[str, Any]:
    samples: list[float] = []
    answered_ms: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        device = f"bench-light-{n:02d}"
        inbox = watcher.inboxes[device]
        mine: list[float] = []
        answers: list[float] = []
        seen: dict[str, int] = {}
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            for i in range(rounds + WARM_UP):
                body = {
                    "intent": "light_set_brightness",
                    "payload": {"brightness": 10 + (i % 80)},
                    "correlationId": str(uuid.uuid4()),
                }
                start = time.perf_counter()
                r = http.post(f"/api/device/{ids[device]}/command", json=body)
                answered = time.perf_counter()
                assert r.status_code == 202, r.text
                seen[r.json()["status"]] = seen.get(r.json()["status"], 0) + 1
                while True:  # this command's message; any other is counted, not timed
                    sent, arrived = inbox.get(timeout=30)
                    if sent == body["payload"]:
                        break
                    seen["other_cmd_messages"] = seen.get("other_cmd_messages", 0) + 1
                if i >= WARM_UP:  # the first requests open connections
                    mine.append((arrived - start) * 1000)
                    answers.append((answered - start) * 1000)
                # The simulated light confirms within milliseconds; a command still being
                # confirmed when the next arrives would only measure the confirmation.
                time.sleep(0.002)
        with lock:
            samples.extend(mine)
            answered_ms.extend(answers)
            for k, v in seen.items():
                statuses[k] = statuses.get(k, 0) + v

    before = cpu.read() if cpu else None
    simulator_before = _simulator_cpu(cpu)
    wall = _in_threads(client, clients)
    after = cpu.read() if cpu else None
    simulator_ms = (_simulator_cpu(cpu) - simulator_before) * 1000 / (clients * (rounds + WARM_UP))
    return {
        "clients": clients,
        "n": len(samples),
        **percentiles(samples),
        "commands_per_second": round(len(samples) / wall, 1),
        # The simulated lab runs as the server's child process (issue 14): its CPU apart.
        "simulator_cpu_ms_per_request": round(simulator_ms, 2),
        **(
            CpuMeter.per_request(before, after, clients * (rounds + WARM_UP))
            if before and after
            else {}
        ),
        "http_answer": percentiles(answered_ms),
        "accepted_as": statuses,
    }


def _simulator_cpu(cpu: CpuMeter | None) -> float:
    """CPU seconds the server's simulator process (``kittylab.cli.simulate``) has used."""
    import psutil

    if cpu is None:
        return 0.0
    total = 0.0
    for child in cpu.server.children(recursive=True):
        try:
            if "kittylab.cli.simulate" in " ".join(child.cmdline()):
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _healthz(base: str, rounds: int, clients: int, cpu: CpuMeter | None = None) -> dict[str, Any]:
    samples: list[float] = []
    lock = threading.Lock()

    def client(_n: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(rounds + WARM_UP):
                start = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                if i >= WARM_UP:
                    mine.append((time.perf_counter() - start) * 1000)
        with lock:
            samples.extend(mine)

    before = cpu.read() if cpu else None
    wall = _in_threads(client, clients)
    after = cpu.read() if cpu else None
    return {
        "clients": clients,
        "n": len(samples),
        **percentiles(samples),
        "requests_per_second": round(len(samples) / wall, 1),
        **(
            CpuMeter.per_request(before, after, clients * (rounds + WARM_UP))
            if before and after
            else {}
        ),
    }


def _in_threads(client: Any, clients: int) -> float:
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def run(rounds: int, client_counts: list[int], broker_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c, c.database.unit_of_work() as s:
                lab = load_manifest(_bench_lab(Path(tmp)))
                apply_manifest(s, lab, c.clock())
                token = identity.issue_token(s, identity.find_user_by_username(s, "olivia")).token
            port, broker_port = free_port(), free_port()
            # The watcher listens as the service: the embedded broker admits only the
            # lab's identities (created here, in the data dir the server will use).
            own = bootstrap.bus_identities(
                Settings(data_dir=Path(tmp) / "data", _env_file=None)  # type: ignore[call-arg]
            ).own(IdentityKind.SERVICE)
            credential = None if broker_url else (own.username, own.password)
            watch_port = int(broker_url.rsplit(":", 1)[1]) if broker_url else broker_port
            env = {
                **os.environ,
                "KITTYLAB_DATABASE_URL": url,
                "KITTYLAB_DATA_DIR": str(Path(tmp) / "data"),
                "KITTYLAB_MQTT__EMBEDDED_PORT": str(broker_port),
                **({"KITTYLAB_MQTT__URL": broker_url} if broker_url else {}),
                "KITTYLAB_QUERY__MODEL__BACKEND": "none",
                "KITTYLAB_CAD__PREWARM": "false",
                "KITTYLAB_LOG_LEVEL": "WARNING",
            }
            server, log = start_serve(env, port, Path(tmp))
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for_server(base + "/healthz", server, log)
                ids = _light_ids(base, token)
                watcher = CommandWatcher(watch_port, credential)
                cpu = CpuMeter(server.pid, Path(tmp) / "pg")
                try:
                    commands = [
                        _commands(base, token, ids, watcher, rounds, n, cpu) for n in client_counts
                    ]
                finally:
                    watcher.close()
                health = [_healthz(base, rounds, n, cpu) for n in client_counts]
            finally:
                server.terminate()
                server.wait(timeout=60)
                if broker_url:
                    _clear_retained(watch_port, [d.external_id for d in lab.devices])
        finally:
            pg.stop()
    by_clients = {c["clients"]: (c, h) for c, h in zip(commands, health, strict=True)}
    many, one = by_clients.get(CLIENTS), by_clients.get(1)
    return {
        "broker": "external" if broker_url else "embedded (amqtt, in the server process)",
        "http_command_to_mqtt_cmd": commands,
        "healthz_same_clients": health,
        "p95_ratio_command_to_healthz": [
            round(c["p95_ms"] / h["p95_ms"], 2) for c, h in zip(commands, health, strict=True)
        ],
        "throughput_ratio_command_to_healthz": [
            round(c["commands_per_second"] / h["requests_per_second"], 2)
            for c, h in zip(commands, health, strict=True)
        ],
        "server_cpu_ratio_healthz_to_command": [
            round(h["server_cpu_ms_per_request"] / c["server_cpu_ms_per_request"], 2)
            for c, h in zip(commands, health, strict=True)
            if c.get("server_cpu_ms_per_request")
        ],
        "targets": {
            "throughput_ratio_at_16_clients": TARGET_THROUGHPUT_RATIO,
            "met_throughput": many is not None
            and many[0]["commands_per_second"] / many[1]["requests_per_second"]
            >= TARGET_THROUGHPUT_RATIO,
            "p95_ratio_at_1_client": TARGET_P95_RATIO_ONE_CLIENT,
            "met_p95": one is not None
            and one[0]["p95_ms"] / one[1]["p95_ms"] <= TARGET_P95_RATIO_ONE_CLIENT,
        },
    }


def _clear_retained(port: int, external_ids: list[str]) -> None:
    """The simulators' states are retained: on a shared broker they would outlive the
    bench and look like devices to whatever subscribes next (the test suite does)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cmd-bench-cleanup")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for ext in external_ids:
        client.publish(f"kitty/devices/{ext}/state", b"", qos=1, retain=True).wait_for_publish(5)
    client.publish("kitty/simulator/devices", b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _light_ids(base: str, token: str) -> dict[str, str]:
    """The bench lights' ids, once the simulators have reported them online."""
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        devices = httpx.get(
            base + "/api/devices",
            params={"kind": "light", "limit": 100},
            headers=headers,
            timeout=10,
        ).json()["items"]
        ours = {d["externalId"]: d for d in devices if d["externalId"].startswith("bench-light-")}
        if len(ours) == CLIENTS and all(d["onlineState"] == "online" for d in ours.values()):
            return {ext: d["id"] for ext, d in ours.items()}
        time.sleep(0.5)
    states = {ext: d["onlineState"] for ext, d in ours.items()}
    raise RuntimeError(f"the bench lights did not come online: {states}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=60, help="commands per client")
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[1, 4, CLIENTS],
        help=f"client counts to measure (at most {CLIENTS})",
    )
    parser.add_argument(
        "--broker-url",
        help="an external broker (mqtt://127.0.0.1:1883) instead of the embedded one",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = {
        "benchmark": "command_http",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": round(load_before, 2),
        },
        **run(args.requests, [min(n, CLIENTS) for n in args.clients], args.broker_url),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
