"""Run the simulated devices of the lab: advance them in time and report their state as
telemetry (topic ``state``), which keeps them online and gives the API their live state.

Attached to the message bus, the fleet is also the devices' MQTT side: it takes commands
from ``kitty/devices/<id>/cmd`` and publishes each device's state, retained, on
``kitty/devices/<id>/state`` (refusals on ``…/reply``), exactly as a generic MQTT device
does — so commands to the demo lab travel the same path as commands to real equipment,
from any worker process.

A simulator refuses what the API refuses (issue 13): a command that is not strict JSON
(``NaN``, ``Infinity``), over 64 KiB or 32 levels deep, holds a number that is not finite,
names an intent the device does not declare or breaks that intent's payload schema
(``domain.devices.validate_command``) is answered on ``…/reply`` with the reason and never
reaches the simulator, so nothing on the bus can put a value into a device's state that
the state could not be stored with. Should a state still be unstorable, only that
device's report is dropped (``telemetry.store_stream``), never the lab's.

A simulator acts only on a command signed with the lab's command-signing key (issue 13;
``safety.command_signature``): unsigned, altered, expired, addressed to another device or
already received (a replay), it is refused on ``…/reply`` with the reason and changes
nothing. The public key is given to the fleet at construction, as firmware is given it.

Only ``kittylab serve`` runs a fleet (one per lab); worker processes do not, so a scaled-out
lab does not simulate the same printer twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.devices import telemetry
from kittylab.domain import topics
from kittylab.domain.devices import JsonSchema, validate_command
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, PayloadTooLarge, ValidationFailed
from kittylab.domain.payload_checks import MAX_BUS_JSON_BYTES, parse_bus_json
from kittylab.ports import MessageBus
from kittylab.safety.command_signature import CommandRejected, CommandReplayed, CommandVerifier

log = logging.getLogger(__name__)

SIMULATED = "simulated"
STATE_TOPIC = telemetry.STATE_TOPIC


class Simulator(Protocol):
    external_id: str

    def handle(self, intent: str, payload: Mapping[str, Any]) -> None: ...
    def tick(self, seconds: float) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


SimulatorFactory = Callable[[DeviceKind, str, Mapping[str, Any]], Simulator]


class SimulatedFleet:
    """The simulators of every active device on the ``simulated`` integration."""

    def __init__(
        self,
        database: Database,
        factory: SimulatorFactory,
        clock: Callable[[], datetime],
        verifier: CommandVerifier,
    ) -> None:
        self._database = database
        self._verifier = verifier
        self._factory = factory
        self._clock = clock
        self.devices: dict[UUID, Simulator] = {}
        self.capabilities: dict[UUID, dict[str, JsonSchema]] = {}
        """Each device's intents and their payload schemas, as the lab declares them."""
        self._bus: MessageBus | None = None
        self._refusals = telemetry.RefusalLog(log)

    def attach(self, bus: MessageBus) -> None:
        """Take commands from the bus and publish states on it."""
        self._bus = bus
        bus.subscribe(topics.DEVICE_COMMAND_WILDCARD, self._on_command)

    def _by_external_id(self, external_id: str) -> tuple[UUID, Simulator] | None:
        # A copy: ``reload`` may change the mapping from a thread meanwhile.
        for device_id, simulator in list(self.devices.items()):
            if simulator.external_id == external_id:
                return device_id, simulator
        return None

    async def _on_command(self, topic: str, raw: bytes) -> None:
        external_id = topics.device_of(topic)
        found = self._by_external_id(external_id) if external_id else None
        if found is None:
            return  # not one of ours: a real MQTT device with its own firmware
        device_id, simulator = found
        request_id = _request_id_of(raw)
        try:
            message = parse_bus_json(raw, "command")
            if not isinstance(message, dict):
                raise ValidationFailed("command", "must be a JSON object")
            # Only what the lab's key signed is acted on.
            command = self._verifier.verify(simulator.external_id, message)
            intent, payload = command.intent, command.payload
            validate_command(self.capabilities.get(device_id, {}), intent, payload)
            simulator.handle(intent, payload)
        except CommandReplayed as refusal:
            log.warning("%s refused a command: %s", simulator.external_id, refusal)
            self._reply(simulator.external_id, request_id, str(refusal), duplicate=True)
            return
        except (ValidationFailed, PayloadTooLarge, DeviceRefused, CommandRejected) as refusal:
            log.info("%s refused a command: %s", simulator.external_id, refusal)
            self._reply(simulator.external_id, request_id, str(refusal))
            return
        self._publish_state(simulator)
        # Stored at once too, so the API's last known state follows the command.
        await asyncio.to_thread(self._store, [(device_id, simulator)])

    def _reply(
        self, external_id: str, request_id: Any, reason: str, *, duplicate: bool = False
    ) -> None:
        if self._bus is not None:
            reply: dict[str, Any] = {"requestId": request_id, "ok": False, "reason": reason}
            if duplicate:
                reply["duplicate"] = True
            self._bus.publish(topics.device_reply(external_id), reply)

    def _publish_state(self, simulator: Simulator) -> None:
        if self._bus is not None:
            self._bus.publish(
                topics.device_state(simulator.external_id), simulator.snapshot(), retain=True
            )

    def reload(self) -> None:
        """Follow the lab: simulate new devices, drop retired ones, keep the state of the
        rest (a reload must not reset a printer mid-job)."""
        with self._database.unit_of_work() as session:
            rows = session.execute(
                select(
                    Device.id,
                    Device.kind,
                    Device.external_id,
                    Device.attributes,
                    Device.capabilities,
                ).where(Device.integration == SIMULATED, Device.retired_at.is_(None))
            ).all()
        current = {row.id for row in rows}
        for device_id in list(self.devices):
            if device_id not in current:
                del self.devices[device_id]
                self.capabilities.pop(device_id, None)
        for row in rows:
            # Capabilities first: a command for a new simulator is checked against them.
            self.capabilities[row.id] = dict(row.capabilities or {})
            if row.id not in self.devices:
                self.devices[row.id] = self._factory(row.kind, row.external_id, row.attributes)

    def advance(self, seconds: float) -> None:
        for simulator in self.devices.values():
            simulator.tick(seconds)

    def report(self) -> int:
        """Store every device's state as one telemetry batch (and publish it on the bus
        when attached); returns how many."""
        if not self.devices:
            return 0
        devices = list(self.devices.items())
        for _, simulator in devices:
            self._publish_state(simulator)
        return self._store(devices)

    def _store(self, devices: list[tuple[UUID, Simulator]]) -> int:
        """Each device's state judged on its own: one that cannot be stored is dropped,
        counted and logged, and the others are stored (and stay online)."""
        now = self._clock()
        events = [
            telemetry.IncomingEvent(device_id, None, STATE_TOPIC, sim.snapshot(), now)
            for device_id, sim in devices
        ]
        names = {str(device_id): sim.external_id for device_id, sim in devices}
        with self._database.unit_of_work() as session:
            result = telemetry.store_stream(session, events, now)
        for refusal in result.refusals:
            device = names.get(refusal.device, refusal.device)
            self._refusals(telemetry.Refusal(device, refusal.reason, refusal.detail))
        return result.stored


def _request_id_of(raw: bytes) -> str | None:
    """The command's ``requestId`` if it has one, read leniently (``NaN`` allowed), so
    that even a command refused for being malformed gets its refusal to its sender."""
    if len(raw) > MAX_BUS_JSON_BYTES:
        return None
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    request_id = message.get("requestId") if isinstance(message, dict) else None
    return request_id if isinstance(request_id, str) else None


class Fleet(Protocol):
    def reload(self) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def report(self) -> int: ...


async def run_fleet(
    fleet: Fleet,
    *,
    tick_seconds: float = 1.0,
    report_every_seconds: float = 10.0,
    reload_every_seconds: float = 30.0,
    speed: float = 1.0,
    lab_changed: asyncio.Event | None = None,
) -> None:
    """Run until cancelled, simulated time running ``speed`` times faster than real time.
    Database work happens in a thread so the API stays responsive; a failed report is
    logged and retried on the next round rather than stopping the lab. ``lab_changed``
    (set by whoever hears that the lab changed) makes the next round reload and report at
    once, so a newly applied lab's devices are online in a moment rather than at the next
    reload."""
    last_tick = time.monotonic()
    # Reload and report at once on the first round, so the lab is online right away.
    last_report = last_reload = last_tick - max(report_every_seconds, reload_every_seconds)
    while True:
        now = time.monotonic()
        if lab_changed is not None and lab_changed.is_set():
            lab_changed.clear()
            last_report = last_reload = now - max(report_every_seconds, reload_every_seconds)
        fleet.advance((now - last_tick) * speed)
        last_tick = now
        try:
            if now - last_reload >= reload_every_seconds:
                await asyncio.to_thread(fleet.reload)
                last_reload = now
            if now - last_report >= report_every_seconds:
                await asyncio.to_thread(fleet.report)
                last_report = now
        except Exception:
            # The database may be restarting; the simulated lab carries on and the next
            # round retries, instead of the simulator dying silently.
            log.exception("simulated devices could not reload or report; retrying")
        if lab_changed is None:
            await asyncio.sleep(tick_seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lab_changed.wait(), tick_seconds)
