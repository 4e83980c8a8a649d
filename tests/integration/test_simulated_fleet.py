import asyncio
import contextlib
import json
import math
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.devices import simulated_lab
from kittylab.devices.maintenance import mark_silent_devices_offline
from kittylab.domain import topics
from kittylab.domain.enums import OnlineState
from kittylab.domain.simulated_lab import decode, encode
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.safety.command_signature import CommandSigner
from kittylab.simulator.devices import build_simulator
from kittylab.simulator.fleet import SimulatedFleet
from tests.integration.conftest import Person
from tests.integration.live_bus import embedded_broker, eventually, lab_fleet, live_lab, running_bus


def test_demo_lab_devices_report_state_over_mqtt_and_come_online(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    demo_lab_path: Path,
    admin: Person,
) -> None:
    """The simulators speak MQTT only: what they publish reaches the database through the
    server's telemetry ingest, as a real device's state does (issue 14)."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())

    async def scenario() -> None:
        async with live_lab(container) as lab:
            assert len(lab.fleet.fleet.devices) == 18
            lab.fleet.fleet.advance(5.0)
            assert await asyncio.to_thread(lab.fleet.report) == 18

    asyncio.run(scenario())
    devices = client.get("/api/devices?limit=100", headers=admin.headers).json()["items"]
    assert {d["onlineState"] for d in devices} == {"online"}
    climate = next(d for d in devices if d["externalId"] == "farm-climate")
    state = client.get(f"/api/devices/{climate['id']}/state", headers=admin.headers).json()
    assert set(state["state"]) == {"temperature", "humidity"}
    assert state["reportedAt"] is not None
    door = next(d for d in devices if d["externalId"] == "welding-door")
    assert client.get(f"/api/devices/{door['id']}/state", headers=admin.headers).json()[
        "state"
    ] == {"locked": True}


def test_a_new_device_list_adds_and_drops_devices_and_keeps_the_others_state(
    container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        lab = simulated_lab.read(s)
    fleet = SimulatedFleet(build_simulator, bootstrap.command_verifier(container.settings))
    assert len(fleet.follow(lab)) == 18
    prusa = fleet.devices["prusa-mk4"]
    prusa.handle("print_start", {"file": "bracket.gcode"})
    assert fleet.follow([d for d in lab if d.external_id != "bench-lights"]) == []
    assert "bench-lights" not in fleet.devices
    assert fleet.devices["prusa-mk4"] is prusa
    assert prusa.snapshot()["state"] == "heating"
    # The list travels compactly and is read back whole.
    assert decode(json.dumps(encode(lab)).encode()) == lab


def test_fleet_runner_survives_a_failing_report_and_keeps_going() -> None:
    from kittylab.simulator.fleet import run_fleet

    class FlakyFleet:
        def __init__(self) -> None:
            self.reports = 0
            self.ticks = 0.0

        def advance(self, seconds: float) -> None:
            self.ticks += seconds

        def report(self) -> int:
            self.reports += 1
            if self.reports == 1:
                raise RuntimeError("broker restarting")
            return 0

    fleet = FlakyFleet()

    async def run_briefly() -> None:
        task = asyncio.create_task(run_fleet(fleet, tick_seconds=0.01, report_every_seconds=0.02))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run_briefly())
    assert fleet.reports >= 3


# --- one bad bus message cannot poison the lab (issue 13, hole 2) ---------------------

MOSQUITTO = BrokerAddress("127.0.0.1", 1883)


@pytest.fixture
def small_lab(database: Database, container: bootstrap.Container, tmp_path: Path) -> str:
    """A simulated printer, light and sensor with random ids (runs share Mosquitto's
    retained messages); returns the printer's external id."""
    suffix = secrets.token_hex(4)
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(
        f"""version: 1
zones: [{{name: farm, hazard_level: low}}]
devices:
  - {{external_id: printer-{suffix}, kind: printer, zone: farm, integration: simulated}}
  - {{external_id: lights-{suffix}, kind: light, zone: farm, integration: simulated}}
  - {{external_id: climate-{suffix}, kind: sensor, zone: farm, integration: simulated,
     attributes: {{measures: [temperature]}}}}
"""
    )
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(manifest), container.clock())
    return f"printer-{suffix}"


@contextlib.asynccontextmanager
async def broker(kind: str) -> AsyncIterator[BrokerAddress]:
    if kind == "mosquitto":
        yield MOSQUITTO
        return
    async with embedded_broker() as embedded:
        yield BrokerAddress(embedded.host, embedded.port)


POISON: list[tuple[str, bytes]] = [
    (
        "nan-string",
        b'{"requestId":"nan-string","intent":"printer_heat","payload":{"nozzle":"nan"}}',
    ),
    (
        "nan-literal",
        b'{"requestId":"nan-literal","intent":"printer_heat","payload":{"nozzle":NaN}}',
    ),
    ("infinity", b'{"requestId":"infinity","intent":"printer_heat","payload":{"bed":Infinity}}'),
    ("overflow", b'{"requestId":"overflow","intent":"printer_heat","payload":{"nozzle":1e999}}'),
    ("huge", b'{"requestId":"huge","intent":"printer_heat","payload":{"nozzle":1e300}}'),
    (
        "huge-int",
        b'{"requestId":"huge-int","intent":"printer_heat","payload":{"nozzle":1'
        + b"0" * 400
        + b"}}",
    ),
    (
        "deep",
        b'{"requestId":"deep","intent":"printer_heat","payload":{"nozzle":'
        + b"[" * 40
        + b"1"
        + b"]" * 40
        + b"}}",
    ),
    ("unknown-key", b'{"requestId":"unknown-key","intent":"printer_heat","payload":{"fan":1}}'),
    ("not-mine", b'{"requestId":"not-mine","intent":"door_unlock","payload":{}}'),
]


def signed_if_json(signer: CommandSigner, device: str, raw: bytes) -> bytes:
    """``raw`` as the lab would sign it, when it is JSON the signer can write (no NaN or
    Infinity, which are refused before any signature is looked at); otherwise ``raw``."""
    try:
        message = json.loads(raw)
        return json.dumps(
            signer.sign(message["requestId"], device, message["intent"], message["payload"])
        ).encode()
    except (ValueError, RecursionError):
        return raw


@pytest.mark.parametrize("broker_kind", ["embedded", "mosquitto"])
def test_a_simulated_printer_refuses_poisoned_commands_and_the_lab_stays_online(
    broker_kind: str, container: bootstrap.Container, database: Database, small_lab: str
) -> None:
    """Before the fix, ``printer_heat {"nozzle": "nan"}`` on the cmd topic became the
    printer's target; its state could no longer be stored, the fleet's report failed
    every round and every simulated device went offline."""
    printer_ext = small_lab
    replies: dict[str, dict[str, Any]] = {}

    async def scenario() -> SimulatedFleet:
        async with (
            broker(broker_kind) as address,
            running_bus(address, "lab") as bus,
            lab_fleet(container, bus) as lab,
        ):
            fleet = lab.fleet
            async with running_bus(address, "attacker") as attacker:

                async def on_reply(_: str, raw: bytes) -> None:
                    reply = json.loads(raw)
                    replies[str(reply.get("requestId"))] = reply

                attacker.subscribe(topics.device_reply(printer_ext), on_reply)
                await asyncio.sleep(0.2)  # the subscription is in place
                signer = bootstrap.command_signer(container.settings)
                for _, raw in POISON:
                    # Signed with the lab's key where it can be: the simulator checks what
                    # KittyLab itself sends, not only what strangers do.
                    await attacker.publish_now(
                        topics.device_command(printer_ext), signed_if_json(signer, printer_ext, raw)
                    )
                # Nested past what the JSON parser takes: no request id to answer to.
                await attacker.publish_now(
                    topics.device_command(printer_ext), b"[" * 100_000 + b"]" * 100_000
                )
                await eventually(lambda: {name for name, _ in POISON} <= set(replies))
                await eventually(lambda: "None" in replies)
                untouched = printer(fleet).snapshot()
                assert (untouched["nozzle"]["target"], untouched["bed"]["target"]) == (0, 0)
                # A valid command still works.
                await attacker.publish_now(
                    topics.device_command(printer_ext),
                    signer.sign("fine", printer_ext, "printer_heat", {"nozzle": 200}),
                )
                await eventually(lambda: printer(fleet).nozzle_target == 200.0)
                # The whole lab reports (and is stored) as before.
                reported.append(await asyncio.to_thread(lab.report))
                # Clear the retained messages: runs share Mosquitto.
                await eventually(lambda: bus.pending == 0)
                for simulator in fleet.devices.values():
                    clear = topics.device_state(simulator.external_id)
                    await attacker.publish_now(clear, b"", retain=True)
                await attacker.publish_now(topics.SIMULATED_DEVICES, b"", retain=True)
            return fleet

    def printer(fleet: SimulatedFleet) -> Any:
        return next(s for s in fleet.devices.values() if s.external_id == printer_ext)

    reported: list[int] = []
    fleet = asyncio.run(scenario())
    assert reported == [3]
    assert all(reply["ok"] is False and reply["reason"] for reply in replies.values())
    assert "payload.nozzle" in replies["nan-string"]["reason"]
    assert "fine" not in replies
    state = printer(fleet).snapshot()
    assert state["nozzle"]["target"] == 200.0 and state["bed"]["target"] == 0.0
    assert all(math.isfinite(v) for v in (*state["nozzle"].values(), *state["bed"].values()))
    with database.unit_of_work() as s:
        assert mark_silent_devices_offline(s, container.clock(), timedelta(seconds=60)) == 0
        states = s.scalars(select(Device.online_state)).all()
    assert set(states) == {OnlineState.ONLINE}


def test_a_simulator_whose_state_cannot_be_stored_costs_only_its_own_report(
    container: bootstrap.Container, database: Database, small_lab: str
) -> None:
    """Should a simulator's state ever hold NaN again (a bug, not a command: commands are
    refused above), its report is held back and logged; the others are stored."""

    def all_offline() -> None:
        with database.unit_of_work() as s:
            for device in s.scalars(select(Device)):
                device.online_state = OnlineState.OFFLINE

    async def scenario() -> int:
        async with live_lab(container) as lab:
            await asyncio.to_thread(all_offline)
            printer = lab.fleet.fleet.devices[small_lab]
            printer.nozzle_target = float("nan")  # type: ignore[attr-defined]
            return await asyncio.to_thread(lab.fleet.report)

    assert asyncio.run(scenario()) == 2
    with database.unit_of_work() as s:
        online = dict(s.execute(select(Device.external_id, Device.online_state)).tuples().all())
    assert online.pop(small_lab) is OnlineState.OFFLINE
    assert set(online.values()) == {OnlineState.ONLINE}
