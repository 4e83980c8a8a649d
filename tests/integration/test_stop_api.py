"""Stop (issue 13): POST /api/zones/{id}/stop and /api/lab/stop put every device of the zone
or lab in its safe state, in the safe direction only, never held, for operators, audited;
and on the real path (embedded broker, simulated lab) the devices confirm it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, Device, DeviceCommand, Zone
from kittylab.api.app import create_app
from kittylab.cli.main import app
from kittylab.config import CommandSettings
from kittylab.domain.enums import CommandStatus, OnlineState, Role
from kittylab.domain.principal import Principal
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.safety import stop
from tests.integration.api_server import served
from tests.integration.conftest import Person, _person
from tests.integration.live_bus import eventually, live_lab

FAST = CommandSettings(ack_timeout_seconds=2, poll_interval_seconds=0.05)
PRINTERS = {"prusa-mk4", "voron-24", "bambu-x1c"}


@pytest.fixture
def lab(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> dict[str, UUID]:
    """The demo lab, every device online; zone name → id."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE
        return {z.name: z.id for z in s.scalars(select(Zone))}


def post(client: TestClient, who: Person, url: str) -> dict[str, object]:
    response = client.post(url, headers=who.headers)
    answer: dict[str, object] = response.json()
    answer["_status"] = response.status_code
    return answer


def asked(answer: dict[str, object]) -> set[tuple[str, str]]:
    commands = answer["commands"]
    assert isinstance(commands, list)
    return {(c["deviceName"], c["intent"]) for c in commands}


def test_an_operator_stops_the_print_farm_printers_cool_and_nothing_is_held(
    client: TestClient, operator: Person, lab: dict[str, UUID], database: Database
) -> None:
    answer = post(client, operator, f"/api/zones/{lab['print-farm']}/stop")
    assert answer["_status"] == 202
    assert answer["refusals"] == []
    # No state reported yet: a print may be running, so each printer is asked to pause too.
    assert asked(answer) == {(p, i) for p in PRINTERS for i in ("print_pause", "printer_cooldown")}
    with database.unit_of_work() as s:
        commands = s.scalars(select(DeviceCommand)).all()
        assert {c.status for c in commands} == {CommandStatus.PENDING}
        assert all(c.safety_event_id is None for c in commands)  # never held
        [entry] = s.scalars(select(AuditEntry).where(AuditEntry.action == "stop.requested"))
        assert entry.actor_id == operator.user_id
        assert entry.subject_id == str(lab["print-farm"])
        assert len(entry.details["commands"]) == 6


def test_an_engineer_may_not_stop_a_zone_and_nothing_is_recorded(
    client: TestClient, lab: dict[str, UUID], database: Database
) -> None:
    engineer = _person(database, "eve", ["engineer"])
    assert post(client, engineer, f"/api/zones/{lab['print-farm']}/stop")["_status"] == 403
    assert post(client, engineer, "/api/lab/stop")["_status"] == 403
    with database.unit_of_work() as s:
        assert s.scalars(select(DeviceCommand)).all() == []


def test_an_offline_device_is_listed_and_the_others_still_stop(
    client: TestClient, safety_lead: Person, lab: dict[str, UUID], database: Database
) -> None:
    with database.unit_of_work() as s:
        voron = s.scalars(select(Device).where(Device.external_id == "voron-24")).one()
        voron.online_state = OnlineState.OFFLINE
    answer = post(client, safety_lead, f"/api/zones/{lab['print-farm']}/stop")
    assert answer["_status"] == 202
    refusals = answer["refusals"]
    assert isinstance(refusals, list)
    assert {(r["deviceName"], r["intent"]) for r in refusals} == {
        ("voron-24", "print_pause"),
        ("voron-24", "printer_cooldown"),
    }
    assert all("offline" in r["reason"] for r in refusals)
    assert {d for d, _ in asked(answer)} == PRINTERS - {"voron-24"}


def test_a_lab_stop_covers_every_zone_in_the_safe_direction_only(
    client: TestClient, admin: Person, lab: dict[str, UUID]
) -> None:
    answer = post(client, admin, "/api/lab/stop")
    assert answer["_status"] == 202
    assert answer["refusals"] == []
    intents = {i for _, i in asked(answer)}
    assert intents == {"print_pause", "printer_cooldown", "power_off", "door_lock"}
    devices = {d for d, _ in asked(answer)}
    assert {"cnc-door", "laser-door", "welding-door"} <= devices
    assert len(devices) == 3 + 3 + 3  # printers, relays, doors: lights and sensors are left


def test_an_unknown_zone_is_404(client: TestClient, operator: Person, lab: dict[str, UUID]) -> None:
    assert post(client, operator, f"/api/zones/{UUID(int=7)}/stop")["_status"] == 404


def test_a_lab_stop_pauses_before_it_cools_powers_off_after_and_leaves_every_device_safe(
    container: bootstrap.Container, lab: dict[str, UUID], database: Database
) -> None:
    operator = _person(database, "oscar", ["operator"])

    async def main() -> None:
        async with live_lab(container) as (bus, fleet, wired):
            heard: list[tuple[str, dict[str, object]]] = []

            async def collect(topic: str, payload: bytes) -> None:
                heard.append((topic, json.loads(payload)))

            bus.subscribe("kitty/lab/stop", collect)
            await asyncio.sleep(0.2)  # subscribed before the stop is announced
            by_name = {sim.external_id: sim for sim in fleet.devices.values()}
            by_name["voron-24"].handle("print_start", {"file": "part.gcode"})
            by_name["prusa-mk4"].handle("printer_heat", {"nozzle": 215, "bed": 60})
            for name, sim in by_name.items():
                if name.endswith("-door"):
                    sim.handle("door_unlock", {})
                elif sim.kind.value == "power":
                    sim.handle("power_on", {})
            await asyncio.to_thread(fleet.report)
            received = record_commands(fleet)
            with database.unit_of_work() as s:
                result = stop.stop(
                    s,
                    jobs=wired.jobs,
                    bus=bus,
                    requester=Principal(operator.user_id, "oscar", frozenset({Role.OPERATOR})),
                    now=container.clock(),
                )
            assert result.refusals == ()
            await eventually(lambda: heard)
            [(_, announced)] = heard
            assert announced["zoneId"] is None and announced["refusals"] == []
            assert len(announced["commands"]) == len(result.commands)  # type: ignore[arg-type]
            # Phases: the stop asked every pause first, then cool-downs, power, doors.
            ranks = [stop.STOP_INTENTS.index(c.intent) for c in result.commands]
            assert ranks == sorted(ranks)
            # The worker's job: one ordered dispatch of all of them.
            outcomes = await stop.send_in_order(
                database, wired.drivers, [c.command_id for c in result.commands], FAST,
                container.clock,
            )  # fmt: skip
            assert [o.status for o in outcomes] == [CommandStatus.ACKED] * len(result.commands)
            # What the devices received, in the order they received it.
            order = [intent for _, intent in received]
            assert order.index("printer_cooldown") > _last(order, "print_pause")
            assert ("voron-24", "print_pause") in received
            assert received.index(("voron-24", "printer_cooldown")) > received.index(
                ("voron-24", "print_pause")
            )
            assert order.index("power_off") > _last(order, "printer_cooldown")
            assert order.index("door_lock") > _last(order, "power_off")
            assert by_name["voron-24"].snapshot()["state"] == "paused"
            for name in PRINTERS:
                snap = by_name[name].snapshot()
                assert snap["nozzle"]["target"] == 0 and snap["bed"]["target"] == 0
            for name, sim in by_name.items():
                if name.endswith("-door"):
                    assert sim.snapshot() == {"locked": True}
                elif sim.kind.value == "power":
                    assert sim.snapshot()["on"] is False

    asyncio.run(main())


def record_commands(fleet: Any) -> list[tuple[str, str]]:
    """Every command the simulators take from now on, as (device, intent), in order."""
    received: list[tuple[str, str]] = []
    for sim in fleet.devices.values():
        original = sim.handle

        def handle(intent: str, payload: Any, _sim: Any = sim, _original: Any = original) -> None:
            received.append((_sim.external_id, intent))
            _original(intent, payload)

        sim.handle = handle
    return received


def _last(items: list[str], value: str) -> int:
    return len(items) - 1 - items[::-1].index(value)


def test_the_stop_dispatches_its_commands_with_one_ordered_job(
    client: TestClient, operator: Person, lab: dict[str, UUID], database: Database
) -> None:
    answer = post(client, operator, "/api/lab/stop")
    assert answer["_status"] == 202
    with database.unit_of_work() as s:
        waiting = s.execute(
            text("SELECT task_name, args FROM procrastinate_jobs WHERE status = 'todo'")
        ).all()
    names = [name for name, _ in waiting]
    assert "kittylab:dispatch_command" not in names  # no job per command, in any order
    [args] = [args for name, args in waiting if name == "kittylab:dispatch_in_order"]
    commands = answer["commands"]
    assert isinstance(commands, list)
    assert args["command_ids"].split(",") == [c["commandId"] for c in commands]


def test_kittylab_stop_stops_a_zone_by_name_through_the_running_server(
    container: bootstrap.Container, operator: Person, lab: dict[str, UUID], database: Database
) -> None:
    with served(create_app(container)) as port:
        env = {"KITTYLAB_URL": f"http://127.0.0.1:{port}", "KITTYLAB_TOKEN": operator.token}
        result = CliRunner().invoke(app, ["stop", "laser-room"], env={**env, "COLUMNS": "200"})
        unknown = CliRunner().invoke(app, ["stop", "no-such-room"], env=env)
    assert result.exit_code == 0, result.output
    assert "power_off → laser-power: sent" in result.output
    assert "door_lock → laser-door: sent" in result.output
    assert "1 refused" not in result.output and "2 command(s) sent" in result.output
    assert unknown.exit_code != 0 and "no zone is called 'no-such-room'" in unknown.output


def test_a_locked_device_still_takes_the_stop(
    client: TestClient, operator: Person, lab: dict[str, UUID], database: Database
) -> None:
    with database.unit_of_work() as s:
        relay = s.scalars(select(Device.id).where(Device.external_id == "laser-power")).one()
    placed = client.post(
        f"/api/devices/{relay}/locks", json={"reason": "new tube"}, headers=operator.headers
    )
    assert placed.status_code == 201, placed.text
    answer = post(client, operator, f"/api/zones/{lab['laser-room']}/stop")
    assert answer["refusals"] == []
    assert ("laser-power", "power_off") in asked(answer)
