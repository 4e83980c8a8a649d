"""Signed commands on the bus (issue 13): every ``cmd`` KittyLab sends carries the service's
Ed25519 signature over the request id, device, intent, payload and an expiry, and the
simulated devices act only on a valid, unexpired, first-seen one.

The attacker here holds a publishing identity the broker accepts (a leaked service
password, or a broker run without the ACL): before the fix, replaying a command captured
off the bus, or changing its payload, drove the device again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, User
from kittylab.config import CommandSettings
from kittylab.devices import dispatch
from kittylab.domain import topics
from kittylab.domain.enums import CommandStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.safety.command_signature import CommandSigner
from tests.integration.live_bus import LabFleet, eventually, live_lab, running_bus

FAST = CommandSettings(ack_timeout_seconds=2, poll_interval_seconds=0.05)


@pytest.fixture
def operator(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> UUID:
    """The demo lab applied; returns the id of its operator, ``olivia``."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        return s.scalars(select(User.id).where(User.username == "olivia")).one()


class Wire:
    """A client holding a publishing identity: it sees every ``cmd`` and every reply."""

    def __init__(self, bus: MqttBus) -> None:
        self.bus = bus
        self.commands: dict[str, list[bytes]] = {}
        self.replies: list[dict[str, Any]] = []

        async def on_command(topic: str, raw: bytes) -> None:
            self.commands.setdefault(str(topics.device_of(topic)), []).append(raw)

        async def on_reply(_: str, raw: bytes) -> None:
            self.replies.append(json.loads(raw))

        bus.subscribe(topics.DEVICE_COMMAND_WILDCARD, on_command)
        bus.subscribe(topics.DEVICE_REPLY_WILDCARD, on_reply)

    def refusal(self, request_id: object) -> str | None:
        for reply in self.replies:
            if reply.get("requestId") == request_id and reply.get("ok") is False:
                return str(reply.get("reason"))
        return None


async def send(
    container: bootstrap.Container,
    bus: MqttBus,
    operator: UUID,
    external_id: str,
    intent: str,
    **payload: object,
) -> CommandStatus:
    """A command through KittyLab's own path, dispatched and confirmed."""
    with container.database.unit_of_work() as s:
        device = s.scalars(select(Device.id).where(Device.external_id == external_id)).one()
        command = dispatch.submit(
            s,
            device_id=device,
            intent=intent,
            payload=payload,
            requested_by=operator,
            now=container.clock(),
        )
    drivers = bootstrap.device_drivers(bus, container.settings)
    outcome = await dispatch.dispatch(
        container.database, drivers, command.id, FAST, container.clock
    )
    return outcome.status


def simulator(fleet: LabFleet, external_id: str) -> Any:
    return next(s for s in fleet.devices.values() if s.external_id == external_id)


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> str:
    """The bus tests run on the embedded broker and on the real Mosquitto (issue 13)."""
    return str(request.param)


def run(container: bootstrap.Container, scenario: Any, broker: str = "embedded") -> None:
    async def main() -> None:
        async with live_lab(container, broker) as (bus, fleet, _):
            address = BrokerAddress("127.0.0.1", bus.address.port)
            async with running_bus(address, "attacker") as attacker:
                wire = Wire(attacker)
                await asyncio.sleep(0.2)  # its subscriptions are in place
                await scenario(bus, fleet, wire)

    asyncio.run(main())


def test_a_normal_command_is_signed_and_acked_end_to_end(
    container: bootstrap.Container, operator: UUID, broker: str
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet, wire: Wire) -> None:
        status = await send(
            container, bus, operator, "bench-lights", "light_set_brightness", brightness=30
        )
        assert status is CommandStatus.ACKED
        assert simulator(fleet, "bench-lights").snapshot() == {"on": True, "brightness": 30}
        await eventually(lambda: "bench-lights" in wire.commands)
        [raw] = wire.commands["bench-lights"]
        message = json.loads(raw)
        assert set(message) >= {"requestId", "intent", "payload", "signed", "signature"}
        signed = json.loads(message["signed"])
        assert signed["id"] == message["requestId"]
        assert (signed["device"], signed["intent"]) == ("bench-lights", "light_set_brightness")
        assert signed["payload"] == {"brightness": 30}
        assert isinstance(signed["expires"], int)

    run(container, scenario, broker)


def test_a_signed_command_replayed_is_refused_by_the_simulator(
    container: bootstrap.Container, operator: UUID, broker: str
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet, wire: Wire) -> None:
        assert await send(container, bus, operator, "cnc-lights", "light_on") is (
            CommandStatus.ACKED
        )
        assert await send(container, bus, operator, "cnc-lights", "light_off") is (
            CommandStatus.ACKED
        )
        await eventually(lambda: len(wire.commands.get("cnc-lights", [])) == 2)
        captured_on = wire.commands["cnc-lights"][0]
        await wire.bus.publish_now(topics.device_command("cnc-lights"), captured_on)
        request_id = json.loads(captured_on)["requestId"]
        await eventually(lambda: wire.refusal(request_id) is not None)
        assert "replay" in str(wire.refusal(request_id))
        assert simulator(fleet, "cnc-lights").snapshot()["on"] is False

    run(container, scenario, broker)


def test_a_tampered_payload_is_refused_by_the_simulator(
    container: bootstrap.Container, operator: UUID, broker: str
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet, wire: Wire) -> None:
        assert (
            await send(
                container, bus, operator, "farm-lights", "light_set_brightness", brightness=20
            )
            is CommandStatus.ACKED
        )
        await eventually(lambda: "farm-lights" in wire.commands)
        message = json.loads(wire.commands["farm-lights"][0])
        # A fresh id, so it is not refused as a replay; brightness changed where the
        # device reads it, inside and outside the signed text.
        message["requestId"] = "tampered-1"
        message["payload"] = {"brightness": 100}
        if "signed" in message:
            signed = json.loads(message["signed"])
            signed.update(id="tampered-1", payload={"brightness": 100})
            message["signed"] = json.dumps(signed, sort_keys=True, separators=(",", ":"))
        await wire.bus.publish_now(topics.device_command("farm-lights"), message)
        await eventually(lambda: wire.refusal("tampered-1") is not None)
        assert "signature" in str(wire.refusal("tampered-1"))
        assert simulator(fleet, "farm-lights").snapshot()["brightness"] == 20

    run(container, scenario, broker)


def test_an_unsigned_or_expired_command_is_refused_by_the_simulator(
    container: bootstrap.Container, operator: UUID, broker: str
) -> None:
    async def scenario(bus: MqttBus, fleet: LabFleet, wire: Wire) -> None:
        unsigned = {"requestId": "unsigned-1", "intent": "door_unlock", "payload": {}}
        await wire.bus.publish_now(topics.device_command("welding-door"), unsigned)
        await eventually(lambda: wire.refusal("unsigned-1") is not None)
        assert "unsigned" in str(wire.refusal("unsigned-1"))

        # Signed with the service's own key, but a minute ago with a 30 s lifetime: a
        # command held back (a broker queue, an attacker) and delivered late.
        key = bootstrap.command_signer(container.settings)
        late = CommandSigner(key.private_key, ttl_seconds=30, clock=lambda: key.clock() - 60)
        stale = late.sign("stale-1", "welding-door", "door_unlock", {})
        await wire.bus.publish_now(topics.device_command("welding-door"), stale)
        await eventually(lambda: wire.refusal("stale-1") is not None)
        assert "expired" in str(wire.refusal("stale-1"))
        assert simulator(fleet, "welding-door").snapshot()["locked"] is True

    run(container, scenario, broker)
