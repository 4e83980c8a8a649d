"""The demo lab's devices on the message bus: a fleet of simulators that is a device like
any other (issue 14). It has no database access: it speaks MQTT only, and KittyLab's own
telemetry ingest stores what it says, so the demo travels the real device path.

- **Which devices.** The fleet simulates the devices listed in the retained message on
  ``kitty/simulator/devices`` (``domain.simulated_lab``), which KittyLab publishes as the
  lab changes (``devices.simulated_lab``): a new device is simulated and reports its state
  at once; a retired one is dropped; the others keep their state (a new list must not
  reset a printer mid-job).
- **Commands.** It takes commands from ``kitty/devices/<id>/cmd`` and publishes each
  device's state, retained, on ``kitty/devices/<id>/state`` (refusals on ``…/reply``),
  exactly as a generic MQTT device does (docs/integrations/mqtt.md).
- **Reports.** ``report`` publishes every device's state, which keeps it online (the
  server stores it as the device's ``state`` telemetry); ``run_fleet`` does so every
  ``report_every_seconds`` while advancing the simulators in time.

A simulator refuses what the API refuses (issue 13): a command that is not strict JSON
(``NaN``, ``Infinity``), over 64 KiB or 32 levels deep, holds a number that is not finite,
names an intent the device does not declare or breaks that intent's payload schema
(``domain.devices.validate_command``) is answered on ``…/reply`` with the reason and never
reaches the simulator, so nothing on the bus can put a value into a device's state that
the state could not be stored with. Should a simulator's state still be one its kind
cannot have (a bug), only that device's report is held back and logged, never the lab's.

A simulator acts only on a command signed with the lab's command-signing key (issue 13;
``safety.command_signature``): unsigned, altered, expired, addressed to another device or
already received (a replay), it is refused on ``…/reply`` with the reason and changes
nothing. The public key is given to the fleet at construction, as firmware is given it.

``kittylab simulate`` runs a fleet as its own process (``kittylab serve`` starts and
supervises it); tests may run one in their own process, attached to its own bus client
with the simulator's identity, which goes through the broker all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from kittylab.domain import topics
from kittylab.domain.devices import JsonSchema, validate_command
from kittylab.domain.errors import DeviceRefused, PayloadTooLarge, ValidationFailed
from kittylab.domain.payload_checks import MAX_BUS_JSON_BYTES, check_device_state, parse_bus_json
from kittylab.domain.simulated_lab import SimulatedDeviceSpec, decode
from kittylab.ports import MessageBus
from kittylab.safety.command_signature import CommandRejected, CommandReplayed, CommandVerifier

log = logging.getLogger(__name__)

UNFIT_STATE_LOG_SECONDS = 300.0
"""A simulator whose state its kind cannot have is logged once per this many seconds."""


class Simulator(Protocol):
    external_id: str

    def handle(self, intent: str, payload: Mapping[str, Any]) -> None: ...
    def tick(self, seconds: float) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


SimulatorFactory = Callable[[SimulatedDeviceSpec], Simulator]

Snapshotter = Callable[[str], Awaitable[None]]
"""Called with a camera's external id when it takes a snapshot (``camera_snapshot``),
before its new state is published: the camera studio renders the still it reports."""


class SimulatedFleet:
    """The simulators of the devices KittyLab lists for the simulator, by external id."""

    def __init__(self, factory: SimulatorFactory, verifier: CommandVerifier) -> None:
        self._factory = factory
        self._verifier = verifier
        self.devices: dict[str, Simulator] = {}
        self.specs: dict[str, SimulatedDeviceSpec] = {}
        """Each device as the lab declares it: its kind, zone, name and intents."""
        self._bus: MessageBus | None = None
        self.snapshotter: Snapshotter | None = None
        self._unfit_logged: dict[str, float] = {}
        self.published = 0
        """How many states were published in all."""

    def attach(self, bus: MessageBus) -> None:
        """Take the device list and commands from the bus and publish states on it."""
        self._bus = bus
        bus.subscribe(topics.SIMULATED_DEVICES, self._on_devices)
        bus.subscribe(topics.DEVICE_COMMAND_WILDCARD, self._on_command)

    # -- which devices ---------------------------------------------------------------

    async def _on_devices(self, _: str, raw: bytes) -> None:
        if not raw:
            return  # a cleared retained message: keep simulating what we have
        try:
            specs = decode(raw)
        except (ValidationFailed, PayloadTooLarge) as problem:
            log.warning("the list of devices to simulate was refused: %s", problem)
            return
        self.follow(specs)

    def follow(self, specs: Sequence[SimulatedDeviceSpec]) -> list[str]:
        """Simulate exactly ``specs``: new devices start and report at once, retired ones
        go, the rest keep their state. Returns the new devices' external ids."""
        wanted = {spec.external_id: spec for spec in specs}
        for external_id in list(self.devices):
            if external_id not in wanted:
                del self.devices[external_id]
                self.specs.pop(external_id, None)
        new: list[str] = []
        for external_id, spec in wanted.items():
            # The spec first: a command for a new simulator is checked against it.
            self.specs[external_id] = spec
            if external_id not in self.devices:
                self.devices[external_id] = self._factory(spec)
                new.append(external_id)
        for external_id in new:
            self._publish_state(self.devices[external_id])
        if new:
            log.info("simulating %d new devices (%d in all)", len(new), len(self.devices))
        return new

    # -- commands ----------------------------------------------------------------------

    async def _on_command(self, topic: str, raw: bytes) -> None:
        external_id = topics.device_of(topic)
        simulator = self.devices.get(external_id) if external_id else None
        if simulator is None:
            return  # not one of ours: a real MQTT device with its own firmware
        request_id = _request_id_of(raw)
        spec = self.specs.get(simulator.external_id)
        try:
            message = parse_bus_json(raw, "command")
            if not isinstance(message, dict):
                raise ValidationFailed("command", "must be a JSON object")
            # Only what the lab's key signed is acted on.
            command = self._verifier.verify(simulator.external_id, message)
            intent, payload = command.intent, command.payload
            capabilities: Mapping[str, JsonSchema] = spec.capabilities if spec else {}
            validate_command(capabilities, intent, payload)
            simulator.handle(intent, payload)
        except CommandReplayed as refusal:
            log.warning("%s refused a command: %s", simulator.external_id, refusal)
            self._reply(simulator.external_id, request_id, str(refusal), duplicate=True)
            return
        except (ValidationFailed, PayloadTooLarge, DeviceRefused, CommandRejected) as refusal:
            log.info("%s refused a command: %s", simulator.external_id, refusal)
            self._reply(simulator.external_id, request_id, str(refusal))
            return
        if intent == "camera_snapshot" and self.snapshotter is not None:
            try:
                await self.snapshotter(simulator.external_id)
            except Exception:  # the snapshot is counted; only its picture is missing
                log.exception("%s could not render its snapshot", simulator.external_id)
        self._publish_state(simulator)

    def _reply(
        self, external_id: str, request_id: Any, reason: str, *, duplicate: bool = False
    ) -> None:
        if self._bus is not None:
            reply: dict[str, Any] = {"requestId": request_id, "ok": False, "reason": reason}
            if duplicate:
                reply["duplicate"] = True
            self._bus.publish(topics.device_reply(external_id), reply)

    # -- states ------------------------------------------------------------------------

    def _publish_state(self, simulator: Simulator) -> bool:
        """Publish the simulator's state, retained, unless its kind cannot have it."""
        state = simulator.snapshot()
        spec = self.specs.get(simulator.external_id)
        try:
            # What the server would refuse to store is held back here, as firmware that
            # checks its own report would: only this device misses a report.
            json.dumps(state, allow_nan=False)
            if spec is not None:
                check_device_state(spec.kind, state, "state")
        except (ValueError, ValidationFailed) as problem:
            self._log_unfit(simulator.external_id, problem)
            return False
        if self._bus is not None:
            self._bus.publish(topics.device_state(simulator.external_id), state, retain=True)
            self.published += 1
        return True

    def _log_unfit(self, external_id: str, problem: Exception) -> None:
        now = time.monotonic()
        if now - self._unfit_logged.get(external_id, -UNFIT_STATE_LOG_SECONDS) >= (
            UNFIT_STATE_LOG_SECONDS
        ):
            self._unfit_logged[external_id] = now
            log.error("%s has a state it cannot report: %s", external_id, problem)

    def advance(self, seconds: float) -> None:
        for simulator in list(self.devices.values()):
            simulator.tick(seconds)

    def report(self) -> int:
        """Publish every device's state; returns how many were published."""
        return sum(self._publish_state(s) for s in list(self.devices.values()))

    def zone_of(self, external_id: str) -> list[tuple[SimulatedDeviceSpec, dict[str, Any]]]:
        """The devices in the zone of ``external_id`` (itself included), each with its
        state now: what a camera there sees."""
        spec = self.specs.get(external_id)
        if spec is None:
            return []
        return [
            (other, self.devices[other.external_id].snapshot())
            for other in sorted(self.specs.values(), key=lambda s: s.external_id)
            if other.zone == spec.zone and other.external_id in self.devices
        ]


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
    def advance(self, seconds: float) -> None: ...
    def report(self) -> int: ...


async def run_fleet(
    fleet: Fleet,
    *,
    tick_seconds: float = 1.0,
    report_every_seconds: float = 10.0,
    speed: float = 1.0,
) -> None:
    """Run until cancelled, simulated time running ``speed`` times faster than real time,
    every device's state published every ``report_every_seconds`` (at once on the first
    round). A failed round is logged and the next one tries again, rather than the
    simulated lab stopping."""
    last_tick = time.monotonic()
    last_report = last_tick - report_every_seconds
    while True:
        now = time.monotonic()
        try:
            fleet.advance((now - last_tick) * speed)
            if now - last_report >= report_every_seconds:
                fleet.report()
                last_report = now
        except Exception:
            log.exception("simulated devices could not advance or report; retrying")
        last_tick = now
        await asyncio.sleep(tick_seconds)
