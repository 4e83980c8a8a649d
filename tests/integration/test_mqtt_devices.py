"""Generic MQTT devices and MQTT telemetry against the machine's Mosquitto
(127.0.0.1:1883; the tests fail if it is not there). Device ids are random so that runs
sharing the broker never see each other's retained messages."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, TelemetryEvent, User
from kittylab.adapters.devices.mqtt import MqttDeviceDriver
from kittylab.config import CommandSettings
from kittylab.devices import dispatch
from kittylab.devices.ports import DeviceUnavailable
from kittylab.devices.telemetry_ingest import TelemetryIngest
from kittylab.domain import topics
from kittylab.domain.enums import CommandStatus, OnlineState
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.live_bus import eventually, running_bus

MOSQUITTO = BrokerAddress("127.0.0.1", 1883)
FAST = CommandSettings(ack_timeout_seconds=3, poll_interval_seconds=0.05)


@pytest.fixture
def light_id(database: Database, container: bootstrap.Container, tmp_path: Path) -> str:
    """A lab with one MQTT light (random id) and one operator; returns the light's id."""
    external_id = f"test-light-{secrets.token_hex(4)}"
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(
        f"""version: 1
zones: [{{name: shop, hazard_level: low}}]
devices:
  - {{external_id: {external_id}, kind: light, zone: shop, integration: mqtt,
     aliases: [shop lights]}}
users:
  - {{username: olivia, display_name: Olivia, roles: [operator]}}
"""
    )
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(manifest), container.clock())
    return external_id


@asynccontextmanager
async def light_firmware(external_id: str) -> AsyncIterator[dict[str, Any]]:
    """A light speaking the generic protocol from its own client, as real firmware would:
    it refuses brightness over 80 (its hardware limit) with a reply."""
    state: dict[str, Any] = {"on": False, "brightness": 0}
    async with running_bus(MOSQUITTO, "firmware") as bus:

        async def on_command(_: str, raw: bytes) -> None:
            message = json.loads(raw)
            intent, payload = message["intent"], message["payload"]
            if intent == "light_set_brightness" and payload["brightness"] > 80:
                reply = {"requestId": message["requestId"], "ok": False, "reason": "max 80 %"}
                await bus.publish_now(topics.device_reply(external_id), reply)
                return
            if intent == "light_on":
                state.update(on=True, brightness=100)
            elif intent == "light_set_brightness":
                state.update(on=payload["brightness"] > 0, brightness=payload["brightness"])
            await bus.publish_now(topics.device_state(external_id), state, retain=True)

        bus.subscribe(topics.device_command(external_id), on_command)
        await bus.publish_now(topics.device_state(external_id), state, retain=True)
        try:
            yield state
        finally:
            await bus.publish_now(topics.device_state(external_id), b"", retain=True)


def operator_id(database: Database) -> UUID:
    with database.unit_of_work() as s:
        return s.scalars(select(User.id).where(User.username == "olivia")).one()


def device_row(database: Database, external_id: str) -> Device:
    with database.unit_of_work() as s:
        device = s.scalars(select(Device).where(Device.external_id == external_id)).one()
        s.expunge(device)
        return device


def test_an_mqtt_light_comes_online_is_driven_and_acked_over_mosquitto(
    container: bootstrap.Container, database: Database, light_id: str
) -> None:
    async def scenario() -> None:
        async with running_bus(MOSQUITTO, "kittylab") as bus, light_firmware(light_id) as light:
            ingest = TelemetryIngest(database, container.clock, flush_seconds=0.05)
            ingest.attach(bus)
            flushing = asyncio.create_task(ingest.run())
            await eventually(lambda: ingest.stored >= 1)
            device = device_row(database, light_id)
            assert device.online_state is OnlineState.ONLINE
            drivers = bootstrap.device_drivers(bus, container.settings)
            outcomes = []
            for brightness in (60, 95):
                with database.unit_of_work() as s:
                    command = dispatch.submit(
                        s,
                        device_id=device.id,
                        intent="light_set_brightness",
                        payload={"brightness": brightness},
                        requested_by=operator_id(database),
                        now=container.clock(),
                    )
                outcomes.append(
                    await dispatch.dispatch(database, drivers, command.id, FAST, container.clock)
                )
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)
            assert light == {"on": True, "brightness": 60}
        assert outcomes[0].status is CommandStatus.ACKED
        assert (outcomes[1].status, outcomes[1].reason) == (CommandStatus.FAILED, "max 80 %")

    asyncio.run(scenario())


def test_mqtt_telemetry_is_stored_and_bad_events_are_dropped_and_counted(
    container: bootstrap.Container, database: Database, light_id: str
) -> None:
    async def scenario() -> TelemetryIngest:
        async with running_bus(MOSQUITTO, "kittylab") as bus:
            ingest = TelemetryIngest(database, container.clock, flush_seconds=0.05)
            ingest.attach(bus)
            flushing = asyncio.create_task(ingest.run())
            await asyncio.sleep(0.2)
            async with running_bus(MOSQUITTO, "sensor") as sensor:
                for watts in (10.5, 11.0, 11.5):
                    await sensor.publish_now(
                        topics.telemetry(light_id, "power/watts"), {"w": watts}
                    )
                await sensor.publish_now(topics.telemetry(light_id, "dump"), b"x" * 70_000)
                await sensor.publish_now(topics.telemetry("no-such-device-x", "t"), b"1")
                await sensor.publish_now(topics.telemetry(light_id, "state"), {"on": True})
                await eventually(lambda: sum(ingest.rejected.values()) >= 3 and ingest.stored >= 3)
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)
            return ingest

    ingest = asyncio.run(scenario())
    assert ingest.stored == 3
    assert ingest.rejected == {"too_large": 1, "unknown_device": 1, "reserved_topic": 1}
    with database.unit_of_work() as s:
        stored = s.scalars(
            select(TelemetryEvent.payload)
            .where(TelemetryEvent.topic == "power/watts")
            .order_by(TelemetryEvent.id)
        )
        assert [p["w"] for p in stored] == [10.5, 11.0, 11.5]


def test_a_refusal_belongs_to_its_own_request_and_never_to_a_reader_of_the_state(
    container: bootstrap.Container, database: Database, light_id: str
) -> None:
    async def scenario() -> None:
        async with running_bus(MOSQUITTO, "kittylab") as bus, light_firmware(light_id) as light:
            driver = bootstrap.device_drivers(bus, container.settings)["mqtt"]
            assert isinstance(driver, MqttDeviceDriver)
            target = dispatch.target_of(device_row(database, light_id))
            too_bright = await driver.send(target, "light_set_brightness", {"brightness": 95})
            fine = await driver.send(target, "light_set_brightness", {"brightness": 40})
            assert too_bright is not None and fine is not None
            await eventually(lambda: driver.refusal(target, too_bright) is not None)
            await eventually(lambda: light["brightness"] == 40)
            assert driver.refusal(target, too_bright) == "max 80 %"
            assert driver.refusal(target, fine) is None
            # Readers of the state never get the refusal; the new state arrives shortly.
            for _ in range(250):
                if (await driver.state(target))["brightness"] == 40:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the light's new state never reached the driver")

    asyncio.run(scenario())


def test_the_mqtt_driver_never_takes_a_non_finite_or_malformed_state(
    container: bootstrap.Container, database: Database, light_id: str
) -> None:
    """A state with NaN, or one a light cannot have, never becomes what the driver (and so
    command confirmation and preconditions) believes; the last good state stands."""

    async def scenario() -> None:
        async with running_bus(MOSQUITTO, "kittylab") as bus, running_bus(MOSQUITTO, "dev") as dev:
            driver = bootstrap.device_drivers(bus, container.settings)["mqtt"]
            target = dispatch.target_of(device_row(database, light_id))
            topic = topics.device_state(light_id)
            try:
                await dev.publish_now(topic, b'{"on": true, "brightness": NaN}', retain=True)
                await asyncio.sleep(0.3)
                with pytest.raises(DeviceUnavailable):
                    await driver.state(target)
                await dev.publish_now(topic, b'{"on": "yes"}', retain=True)
                await asyncio.sleep(0.3)
                with pytest.raises(DeviceUnavailable, match="on"):
                    await driver.state(target)
                await dev.publish_now(topic, {"on": True, "brightness": 30}, retain=True)
                await eventually(lambda: "brightness" in driver._states.get(light_id, {}))  # type: ignore[attr-defined]
                for raw in (b'{"on": false, "brightness": Infinity}', b"[" * 50_000):
                    await dev.publish_now(topic, raw, retain=True)
                await asyncio.sleep(0.3)
                assert await driver.state(target) == {"on": True, "brightness": 30}
            finally:
                await dev.publish_now(topic, b"", retain=True)

    asyncio.run(scenario())
