"""Device commands end to end on the real path: PostgreSQL, the embedded MQTT broker, the
generic MQTT driver, and the simulated lab answering as MQTT devices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand, User
from kittylab.config import CommandSettings
from kittylab.devices import commands, dispatch, telemetry
from kittylab.devices.ports import DeviceTarget, ReportsRefusals
from kittylab.domain.enums import CommandStatus, DeviceKind
from kittylab.domain.errors import DeviceRefused, PermissionDenied
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.simulator.devices import SimulatedPrinter
from tests.integration.live_bus import LabFleet, live_lab, running_bus

FAST = CommandSettings(ack_timeout_seconds=2, poll_interval_seconds=0.05)

Scenario = Callable[[MqttBus, LabFleet], Awaitable[None]]


@pytest.fixture
def lab(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> UUID:
    """The demo lab applied; returns the id of its admin, ``ada``."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        return s.scalars(select(User.id).where(User.username == "ada")).one()


def run_with_lab(container: bootstrap.Container, scenario: Scenario) -> None:
    """Run ``scenario`` with the simulated lab online on a live broker."""

    async def main() -> None:
        async with live_lab(container) as (bus, fleet, _):
            await scenario(bus, fleet)

    asyncio.run(main())


def device_id(database: Database, external_id: str) -> UUID:
    with database.unit_of_work() as s:
        return s.scalars(select(Device.id).where(Device.external_id == external_id)).one()


def submit(
    container: bootstrap.Container,
    requested_by: UUID,
    external_id: str,
    intent: str,
    **payload: object,
) -> UUID:
    with container.database.unit_of_work() as s:
        command = dispatch.submit(
            s,
            device_id=device_id(container.database, external_id),
            intent=intent,
            payload=payload,
            requested_by=requested_by,
            now=container.clock(),
        )
        return command.id


def load(database: Database, command_id: UUID) -> DeviceCommand:
    with database.unit_of_work() as s:
        command = s.get(DeviceCommand, command_id)
        assert command is not None
        s.expunge(command)
        return command


def drivers_on(bus: MqttBus, container: bootstrap.Container) -> dict[str, bootstrap.DeviceDriver]:
    return bootstrap.device_drivers(bus, container.settings)


def test_a_light_command_is_acked_only_once_the_light_reports_the_new_level(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        command_id = submit(container, lab, "bench-lights", "light_set_brightness", brightness=30)
        outcome = await dispatch.dispatch(
            container.database, drivers_on(bus, container), command_id, FAST, container.clock
        )
        assert outcome.status is CommandStatus.ACKED
        light = fleet.devices[device_id(container.database, "bench-lights")]
        assert light.snapshot() == {"on": True, "brightness": 30}

    run_with_lab(container, scenario)
    command = load(container.database, command_id_of(container, "bench-lights"))
    assert [h["status"] for h in command.status_history] == ["pending", "sent", "acked"]
    assert command.ack_at is not None


class SlowFirstLook:
    """The real MQTT driver, except that its state read before the send takes the device's
    whole confirmation window, as it does for a device the driver has not heard from yet
    (``FIRST_STATE_WAIT_SECONDS``) on a busy machine."""

    def __init__(self, inner: bootstrap.DeviceDriver, delay: float) -> None:
        self._inner, self._delay, self._sent = inner, delay, False

    async def send(
        self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]
    ) -> str | None:
        self._sent = True
        return await self._inner.send(device, intent, payload)

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        if not self._sent:
            await asyncio.sleep(self._delay)
        return await self._inner.state(device)

    def refusal(self, device: DeviceTarget, receipt: str) -> str | None:
        assert isinstance(self._inner, ReportsRefusals)
        return self._inner.refusal(device, receipt)

    async def close(self) -> None:
        await self._inner.close()


def test_a_slow_look_before_sending_leaves_the_device_its_whole_time_to_confirm(
    container: bootstrap.Container, lab: UUID
) -> None:
    """Regression (CI, stop 19): the window was counted from the claim, so a state read
    before the send that took it all failed a command the device carried out at once."""

    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        drivers = dict(drivers_on(bus, container))
        drivers["simulated"] = SlowFirstLook(drivers["simulated"], FAST.ack_timeout_seconds)
        command_id = submit(container, lab, "prusa-mk4", "print_start", file="bracket.gcode")
        outcome = await dispatch.dispatch(
            container.database, drivers, command_id, FAST, container.clock
        )
        assert outcome.status is CommandStatus.ACKED, outcome.reason

    run_with_lab(container, scenario)


class PrinterOnTheDesk:
    """A driver in front of the simulated printer model, in process, with nothing else
    storing its states: whatever the database learns of them, the dispatch stored."""

    def __init__(self) -> None:
        self.printer = SimulatedPrinter("prusa-mk4")

    async def send(
        self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]
    ) -> str | None:
        self.printer.handle(intent, payload)
        return None

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        return dict(self.printer.snapshot())

    async def close(self) -> None:
        return None


def test_an_acked_command_stores_the_state_that_confirmed_it(
    container: bootstrap.Container, lab: UUID
) -> None:
    """Regression (CI, issue 14): the ack came from the device's state on the bus, while
    the state the next request is checked against is the stored one, written by another
    path a moment later; a resume sent right after its pause was acked was refused as
    "Prusa is heating, not paused"."""
    desk = PrinterOnTheDesk()
    drivers = {"simulated": desk}
    printer = device_id(container.database, "prusa-mk4")
    with container.database.unit_of_work() as s:  # heard from once: online, idle
        idle = telemetry.IncomingEvent(
            printer, None, telemetry.STATE_TOPIC, desk.printer.snapshot(), container.clock()
        )
        telemetry.store_stream(s, [idle], container.clock())
    for intent, payload in [("print_start", {"file": "bracket.gcode"}), ("print_pause", {})]:
        command_id = submit(container, lab, "prusa-mk4", intent, **payload)
        outcome = asyncio.run(
            dispatch.dispatch(container.database, drivers, command_id, FAST, container.clock)
        )
        assert outcome.status is CommandStatus.ACKED, (intent, outcome.reason)
        with container.database.unit_of_work() as s:
            stored = telemetry.latest_state(s, printer)
            assert stored is not None and stored.payload == desk.printer.snapshot()
    submit(container, lab, "prusa-mk4", "print_resume")  # not refused as still printing


def command_id_of(container: bootstrap.Container, external_id: str) -> UUID:
    with container.database.unit_of_work() as s:
        return s.scalars(
            select(DeviceCommand.id)
            .join(Device, Device.id == DeviceCommand.device_id)
            .where(Device.external_id == external_id)
            .order_by(DeviceCommand.id.desc())
        ).first()  # type: ignore[return-value]


def test_pausing_an_idle_printer_is_refused_before_anything_is_recorded(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        with pytest.raises(DeviceRefused, match="is idle, not printing"):
            submit(container, lab, "prusa-mk4", "print_pause")

    run_with_lab(container, scenario)
    with container.database.unit_of_work() as s:
        assert s.scalars(select(DeviceCommand)).all() == []


def test_a_refusal_from_the_device_fails_the_command_with_the_device_reason(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        # Recorded directly: the last known state is not checked, the device decides.
        with container.database.unit_of_work() as s:
            device = s.get(Device, device_id(container.database, "voron-24"))
            assert device is not None
            command = commands.create_command(
                s,
                device=device,
                intent="print_resume",
                payload={},
                requested_by=lab,
                now=container.clock(),
            )
        outcome = await dispatch.dispatch(
            container.database, drivers_on(bus, container), command.id, FAST, container.clock
        )
        assert outcome.status is CommandStatus.FAILED
        assert outcome.reason == "voron-24 is idle, not paused"

    run_with_lab(container, scenario)


def test_a_command_nothing_confirms_fails_with_what_the_device_last_reported(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        light_id = device_id(container.database, "farm-lights")
        del fleet.devices[light_id]  # the light stops answering, its retained state stays
        command_id = submit(container, lab, "farm-lights", "light_on")
        outcome = await dispatch.dispatch(
            container.database, drivers_on(bus, container), command_id, FAST, container.clock
        )
        assert outcome.status is CommandStatus.FAILED
        assert outcome.reason is not None
        assert outcome.reason.startswith("not confirmed within 2 s; the device reports on=False")

    run_with_lab(container, scenario)


def test_a_command_sent_before_a_crash_is_confirmed_after_it_and_never_sent_twice(
    container: bootstrap.Container, lab: UUID
) -> None:
    sent: list[bytes] = []

    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        async def count(_: str, payload: bytes) -> None:
            sent.append(payload)

        # A second client: filters overlapping on one client may deliver twice.
        port = bus.address.port
        async with running_bus(BrokerAddress("127.0.0.1", port), "witness") as witness:
            witness.subscribe("kitty/devices/cnc-lights/cmd", count)
            await asyncio.sleep(0.1)
            await crash_and_retry(bus)

    async def crash_and_retry(bus: MqttBus) -> None:
        command_id = submit(container, lab, "cnc-lights", "light_off")
        drivers = drivers_on(bus, container)
        # The first worker claims and sends, then dies before recording the outcome.
        claimed = dispatch.claim(
            container.database, command_id, container.clock(), timedelta(minutes=1)
        )
        assert claimed is not None and claimed.newly_sent
        await drivers["simulated"].send(claimed.target, claimed.intent, claimed.payload)
        # The retried job finds it sent: it only waits for confirmation.
        outcome = await dispatch.dispatch(
            container.database, drivers, command_id, FAST, container.clock
        )
        assert outcome.status is CommandStatus.ACKED
        again = await dispatch.dispatch(
            container.database, drivers, command_id, FAST, container.clock
        )
        assert again.status is None  # already decided: nothing happens
        await asyncio.sleep(0.2)

    run_with_lab(container, scenario)
    assert len(sent) == 1
    assert json.loads(sent[0])["intent"] == "light_off"


def test_a_command_left_pending_too_long_fails_instead_of_running_late(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        light = fleet.devices[device_id(container.database, "welding-lights")]
        light.handle("light_on", {})
        command_id = submit(container, lab, "welding-lights", "light_off")
        later = container.clock() + timedelta(minutes=5)
        outcome = await dispatch.dispatch(
            container.database, drivers_on(bus, container), command_id, FAST, lambda: later
        )
        assert outcome.status is None
        assert light.snapshot()["on"] is True  # nothing was sent

    run_with_lab(container, scenario)
    command = load(container.database, command_id_of(container, "welding-lights"))
    assert command.status is CommandStatus.FAILED
    assert command.failure_reason is not None
    assert "nothing was sent" in command.failure_reason


def test_a_safe_command_is_still_sent_however_late(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        command_id = submit(container, lab, "cnc-lights", "light_on")  # makes the lab safer
        later = container.clock() + timedelta(minutes=5)
        outcome = await dispatch.dispatch(
            container.database, drivers_on(bus, container), command_id, FAST, lambda: later
        )
        assert outcome.status is CommandStatus.ACKED

    run_with_lab(container, scenario)


@pytest.mark.parametrize(
    ("external_id", "intent"), [("welding-door", "door_unlock"), ("laser-power", "power_on")]
)
def test_hazardous_intents_are_refused_where_no_approval_can_be_asked_for(
    container: bootstrap.Container, lab: UUID, external_id: str, intent: str
) -> None:
    with pytest.raises(PermissionDenied, match="hazardous"):
        submit(container, lab, external_id, intent)


def test_a_printer_job_runs_from_start_to_pause_to_resume(
    container: bootstrap.Container, lab: UUID
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet) -> None:
        drivers = drivers_on(bus, container)
        printer = fleet.devices[device_id(container.database, "prusa-mk4")]
        for intent, payload in [
            ("print_start", {"file": "bracket.gcode"}),
            ("print_pause", {}),
            ("print_resume", {}),
            ("print_cancel", {}),
        ]:
            command_id = submit(container, lab, "prusa-mk4", intent, **payload)
            outcome = await dispatch.dispatch(
                container.database, drivers, command_id, FAST, container.clock
            )
            assert outcome.status is CommandStatus.ACKED, (intent, outcome.reason)
        assert printer.snapshot()["state"] == "cancelled"
        assert DeviceKind(printer.kind) is DeviceKind.PRINTER  # type: ignore[attr-defined]

    run_with_lab(container, scenario)
