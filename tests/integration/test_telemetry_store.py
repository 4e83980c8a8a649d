"""The telemetry writer (one device query, one ``COPY``, one device update per batch) on a
real PostgreSQL: what each event is judged on, what lands in the table, and what happens
to the devices that reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, TelemetryEvent, Zone
from kittylab.adapters.db.telemetry_copy import copy_telemetry
from kittylab.devices import telemetry
from kittylab.devices.maintenance import mark_silent_devices_offline
from kittylab.devices.telemetry import IncomingEvent
from kittylab.devices.telemetry_ingest import TelemetryIngest
from kittylab.domain import topics
from kittylab.domain.enums import DeviceKind, HazardLevel, OnlineState
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from tests.integration.live_bus import embedded_broker, eventually, running_bus

NOW = datetime.now(UTC)
Invalid = ValidationFailed
AddDevice = Callable[..., UUID]


@pytest.fixture
def add_device(database: Database) -> AddDevice:
    """Adds a device in one zone: ``add_device(external_id, integration, **columns)``."""
    with database.unit_of_work() as s:
        zone = Zone(name="shop", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        zone_id = zone.id

    def add(external_id: str, integration: str = "mqtt", **columns: Any) -> UUID:
        with database.unit_of_work() as s:
            device = Device(
                external_id=external_id,
                integration=integration,
                display_name=external_id,
                zone_id=zone_id,
                **{"kind": DeviceKind.SENSOR, **columns},
            )
            s.add(device)
            s.flush()
            return device.id

    return add


def stream(database: Database, events: list[IncomingEvent]) -> telemetry.StreamResult:
    with database.unit_of_work() as s:
        return telemetry.store_stream(s, events, NOW)


def rows(database: Database) -> list[tuple[UUID, str, Any]]:
    with database.unit_of_work() as s:
        found = s.execute(
            select(TelemetryEvent.device_id, TelemetryEvent.topic, TelemetryEvent.payload).order_by(
                TelemetryEvent.id
            )
        )
        return [(d, t, p) for d, t, p in found]


def device(database: Database, device_id: UUID) -> Device:
    with database.unit_of_work() as s:
        found = s.get(Device, device_id)
        assert found is not None
        s.expunge(found)
        return found


def by_ext(external_id: str, topic: str, payload: Any, **more: Any) -> IncomingEvent:
    return IncomingEvent(None, external_id, topic, payload, more.get("at"), more.get("via"))


def test_a_mixed_stream_stores_the_good_events_in_order_and_counts_each_refusal(
    database: Database, add_device: AddDevice
) -> None:
    meter = add_device("meter")
    fume = add_device("fume", integration="simulated")
    events = [
        by_ext("meter", "power/watts", {"w": 10.5}),
        by_ext("no-such-device", "t", 1),
        by_ext("meter", "dump", "x" * 70_000),
        IncomingEvent(fume, None, "air/voc", [1, 2, 3], None),
        by_ext("meter", "t", float("nan")),  # not JSON: PostgreSQL would refuse it
        by_ext("meter", "t", {"text": "a\x00b"}),  # jsonb cannot hold NUL
        by_ext("meter", "x" * 257, 1),  # longer than the column
        by_ext("meter", "t", 1, at=NOW + timedelta(hours=1)),
        IncomingEvent(UUID(int=7), None, "t", 1, None),
        by_ext("meter", "power/watts", {"w": 11.0}),
    ]
    result = stream(database, events)
    assert result.stored == 3
    assert result.rejected == {"unknown_device": 2, "too_large": 1, "invalid": 4}
    assert rows(database) == [
        (meter, "power/watts", {"w": 10.5}),
        (fume, "air/voc", [1, 2, 3]),
        (meter, "power/watts", {"w": 11.0}),
    ]


def test_text_that_copy_must_escape_arrives_unchanged(
    database: Database, add_device: AddDevice
) -> None:
    meter = add_device("meter")
    payloads: list[Any] = [
        {"tab": "a\tb", "newline": "a\nb", "cr": "a\rb", "backslash": "a\\b"},
        "a literal \\u0000 is text, not NUL",
        "\\N",  # COPY's NULL marker in text format, as data
        {"unicode": "Grüße, 温度, 🌡", "quote": 'say "hi"', "line sep": "a\u2028b"},
        None,
        [True, False, 0, -1.5e-7, 12345678901234567890],
    ]
    topic = "zone A/température\tand\\more"
    result = stream(database, [by_ext("meter", topic, p) for p in payloads])
    assert result.stored == len(payloads) and result.rejected == {}
    assert rows(database) == [(meter, topic, p) for p in payloads]


def test_last_seen_never_moves_back_and_only_offline_devices_come_online(
    database: Database, add_device: AddDevice
) -> None:
    earlier = NOW - timedelta(hours=2)
    fresh = add_device("fresh")  # offline, never seen
    faulty = add_device("faulty", online_state=OnlineState.FAULT, last_seen=earlier)
    ahead = add_device("ahead", online_state=OnlineState.ONLINE, last_seen=NOW)
    events = [
        by_ext("fresh", "t", 1, at=NOW - timedelta(minutes=30)),
        by_ext("fresh", "t", 2, at=NOW - timedelta(minutes=10)),
        by_ext("fresh", "t", 3, at=NOW - timedelta(minutes=20)),  # late, out of order
        by_ext("faulty", "t", 1, at=NOW - timedelta(hours=1)),
        by_ext("ahead", "t", 1, at=NOW - timedelta(days=1)),  # back-filled
    ]
    assert stream(database, events).stored == 5
    assert (device(database, fresh).online_state, device(database, fresh).last_seen) == (
        OnlineState.ONLINE,
        NOW - timedelta(minutes=10),
    )
    # A report does not clear a fault (its integration does), but it was seen.
    assert device(database, faulty).online_state is OnlineState.FAULT
    assert device(database, faulty).last_seen == NOW - timedelta(hours=1)
    assert device(database, ahead).last_seen == NOW
    # Nothing newer: nothing moves, even with the newest events of the batch before.
    stream(database, [by_ext("fresh", "t", 4, at=NOW - timedelta(hours=3))])
    assert device(database, fresh).last_seen == NOW - timedelta(minutes=10)


def test_a_retired_device_that_reports_is_offline_and_stays_so(
    database: Database, add_device: AddDevice
) -> None:
    retired = add_device("old", retired_at=NOW - timedelta(days=1))
    result = stream(database, [by_ext("old", "t", 1), IncomingEvent(retired, None, "t", 1, None)])
    assert (result.stored, result.rejected) == (0, {"unknown_device": 2})
    assert device(database, retired).online_state is OnlineState.OFFLINE
    assert device(database, retired).last_seen is None


def test_an_external_id_two_integrations_share_needs_the_integration(
    database: Database, add_device: AddDevice
) -> None:
    mqtt_lamp = add_device("lamp", integration="mqtt")
    ha_lamp = add_device("lamp", integration="home_assistant")
    result = stream(
        database,
        [
            by_ext("lamp", "state", {"on": True}, via="mqtt"),
            by_ext("lamp", "power", 3),  # which lamp? refused, not guessed
            by_ext("lamp", "power", 4, via="home_assistant"),
            by_ext("lamp", "power", 5, via="zigbee"),
        ],
    )
    assert (result.stored, result.rejected) == (2, {"unknown_device": 2})
    assert rows(database) == [(mqtt_lamp, "state", {"on": True}), (ha_lamp, "power", 4)]
    with pytest.raises(ValidationFailed) as refused, database.unit_of_work() as s:
        telemetry.store_batch(s, [by_ext("lamp", "power", 3)], NOW)
    assert refused.value.field == "events.0.integration"


def test_an_api_batch_with_one_bad_event_stores_nothing_and_names_it(
    database: Database, add_device: AddDevice
) -> None:
    meter = add_device("meter")
    good = IncomingEvent(meter, None, "t", {"v": 1}, None)
    refusals: list[tuple[IncomingEvent, str, type[Exception]]] = [
        (IncomingEvent(meter, None, "t", "x" * 70_000, None), "events.1.payload", PayloadTooLarge),
        (IncomingEvent(meter, None, "t", {"v": float("inf")}, None), "events.1.payload", Invalid),
        (IncomingEvent(meter, None, "t", "\x00", None), "events.1.payload", Invalid),
        (IncomingEvent(meter, None, "", 1, None), "events.1.topic", Invalid),
        (IncomingEvent(UUID(int=1), None, "t", 1, None), "events.1.deviceId", Invalid),
    ]
    for bad, field, error in refusals:
        with pytest.raises(error) as refused, database.unit_of_work() as s:
            telemetry.store_batch(s, [good, bad, good], NOW)
        assert getattr(refused.value, "field", None) == field
    assert rows(database) == []
    assert device(database, meter).last_seen is None
    with database.unit_of_work() as s:
        assert telemetry.store_batch(s, [good, good], NOW) == 2
    assert [p for _, _, p in rows(database)] == [{"v": 1}, {"v": 1}]
    assert device(database, meter).online_state is OnlineState.ONLINE


def test_a_failed_copy_is_a_database_error_and_rolls_back_the_batch(
    database: Database, add_device: AddDevice
) -> None:
    meter = add_device("meter")
    with pytest.raises(IntegrityError), database.unit_of_work() as s:
        copy_telemetry(s, [(meter, "t", "1", NOW), (UUID(int=9), "t", "2", NOW)])
    assert rows(database) == []


def test_devices_loaded_in_the_session_see_their_new_state(
    database: Database, add_device: AddDevice
) -> None:
    meter = add_device("meter")
    with database.unit_of_work() as s:
        loaded = s.get(Device, meter)
        assert loaded is not None and loaded.online_state is OnlineState.OFFLINE
        telemetry.store_batch(s, [IncomingEvent(meter, None, "t", 1, None)], NOW)
        assert (loaded.online_state, loaded.last_seen) == (OnlineState.ONLINE, NOW)


def test_an_unstorable_mqtt_payload_is_counted_and_the_stream_goes_on(
    database: Database, add_device: AddDevice
) -> None:
    """Before the checks, one NaN reading failed its whole batch, and the ingest retried
    that batch forever: nothing from any device was stored again."""
    add_device("meter")

    async def scenario() -> TelemetryIngest:
        async with embedded_broker() as broker:
            address = BrokerAddress(broker.host, broker.port)
            async with running_bus(address, "kittylab") as bus:
                ingest = TelemetryIngest(database, lambda: NOW, flush_seconds=0.05)
                ingest.attach(bus)
                flushing = asyncio.create_task(ingest.run())
                await asyncio.sleep(0.2)
                async with running_bus(address, "sensor") as sensor:
                    for raw in (b'{"t": NaN}', b'{"t": 21.5}', b'"\\u0000"', b'{"t": 22}'):
                        await sensor.publish_now(topics.telemetry("meter", "temp"), raw)
                    await eventually(lambda: ingest.stored + sum(ingest.rejected.values()) >= 4)
                flushing.cancel()
                await asyncio.gather(flushing, return_exceptions=True)
                return ingest

    ingest = asyncio.run(scenario())
    assert (ingest.stored, ingest.rejected) == (2, {"invalid": 2})
    assert [json.dumps(p) for _, _, p in rows(database)] == ['{"t": 21.5}', '{"t": 22}']


# --- one message cannot poison the ingest (issue 13, hole 2) -----------------------------

MOSQUITTO = BrokerAddress("127.0.0.1", 1883)


@contextlib.asynccontextmanager
async def broker(kind: str) -> AsyncIterator[BrokerAddress]:
    if kind == "mosquitto":
        yield MOSQUITTO
        return
    async with embedded_broker() as embedded:
        yield BrokerAddress(embedded.host, embedded.port)


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("kittylab_telemetry_events_total", {"outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize("broker_kind", ["embedded", "mosquitto"])
def test_bad_states_among_good_ones_are_dropped_counted_and_every_device_stays_online(
    broker_kind: str, database: Database, add_device: AddDevice
) -> None:
    """A state a device's kind cannot have (a printer's nozzle reading "hot"), or with
    NaN in it, is dropped and counted before it joins a batch; the other devices' states
    in the same batch are stored, and nobody goes offline."""
    tag = secrets.token_hex(3)  # runs share Mosquitto's retained messages
    ids = {name: f"{name}-{tag}" for name in ("lamp", "press", "meter", "fan")}
    kinds = {
        "lamp": DeviceKind.LIGHT,
        "press": DeviceKind.PRINTER,
        "meter": DeviceKind.SENSOR,
        "fan": DeviceKind.POWER,
    }
    for name, ext in ids.items():
        add_device(ext, kind=kinds[name])
    good: dict[str, Any] = {
        "lamp": {"on": True, "brightness": 40},
        "press": {"state": "printing", "nozzle": {"actual": 209.5, "target": 210}},
        "meter": {"temperature": {"value": 21.5, "unit": "°C"}},
        "fan": {"on": False},
    }
    bad: list[tuple[str, bytes]] = [
        ("press", b'{"state": "printing", "nozzle": {"actual": "hot", "target": 210}}'),
        ("lamp", b'{"on": "yes"}'),
        ("meter", b'{"temperature": {"value": NaN, "unit": "C"}}'),
        ("fan", b'{"on": true, "watts": 1e999}'),
    ]
    before = counted("rejected_bad_state"), counted("rejected_invalid")

    async def scenario() -> TelemetryIngest:
        async with broker(broker_kind) as address, running_bus(address, "kittylab") as bus:
            ingest = TelemetryIngest(database, lambda: NOW, flush_seconds=0.05)
            ingest.attach(bus)
            flushing = asyncio.create_task(ingest.run())
            await asyncio.sleep(0.2)
            async with running_bus(address, "devices") as devices:
                for name, state in good.items():
                    await devices.publish_now(topics.device_state(ids[name]), state)
                for name, raw in bad:
                    await devices.publish_now(topics.device_state(ids[name]), raw)
                for name, state in good.items():
                    await devices.publish_now(topics.device_state(ids[name]), state)
                await eventually(
                    lambda: (
                        ingest.stored >= 8
                        and ingest.rejected.get("bad_state", 0) >= 2
                        and ingest.rejected.get("invalid", 0) >= 2
                    )
                )
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)
            return ingest

    ingest = asyncio.run(scenario())
    # On the shared Mosquitto, other runs' retained states arrive too: they name devices
    # this database does not have, or are invalid themselves.
    foreign = {"unknown_device", "invalid"} if broker_kind == "mosquitto" else set()
    assert ingest.stored == 8
    assert ingest.rejected["bad_state"] == counted("rejected_bad_state") - before[0] == 2
    assert set(ingest.rejected) <= {"bad_state", "invalid", *foreign}
    if not foreign:
        assert ingest.rejected["invalid"] == counted("rejected_invalid") - before[1] == 2
    assert [p for _, _, p in rows(database)] == [*good.values(), *good.values()]
    with database.unit_of_work() as s:
        assert mark_silent_devices_offline(s, NOW, timedelta(seconds=60)) == 0
        assert set(s.scalars(select(Device.online_state))) == {OnlineState.ONLINE}


def test_an_event_that_fails_its_batch_for_an_unforeseen_reason_costs_only_itself(
    database: Database, add_device: AddDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a bad event ever get past the checks (here they are switched off and NaN
    reaches PostgreSQL), the failed batch is split until the one event is found: it is
    dropped and counted, the others are stored. Before, the batch was retried forever and
    nothing from any device was stored again."""
    add_device("meter")
    add_device("lamp", kind=DeviceKind.LIGHT)

    def unchecked(event: IncomingEvent, at: str, now: datetime) -> str:
        return json.dumps(event.payload)  # NaN as the bare word PostgreSQL refuses

    monkeypatch.setattr(telemetry, "_check_event", unchecked)

    async def scenario() -> TelemetryIngest:
        async with embedded_broker() as embedded:
            address = BrokerAddress(embedded.host, embedded.port)
            async with running_bus(address, "kittylab") as bus:
                # One batch of exactly the six events below.
                ingest = TelemetryIngest(database, lambda: NOW, batch_size=6, flush_seconds=30)
                ingest.attach(bus)
                flushing = asyncio.create_task(ingest.run())
                await asyncio.sleep(0.2)
                async with running_bus(address, "devices") as devices:
                    for raw in (b"1", b"2", b"NaN", b"3"):
                        await devices.publish_now(topics.telemetry("meter", "t"), raw)
                    for raw in (b"4", b"5"):
                        await devices.publish_now(topics.telemetry("lamp", "t"), raw)
                    await eventually(lambda: ingest.stored + sum(ingest.rejected.values()) >= 6)
                flushing.cancel()
                await asyncio.gather(flushing, return_exceptions=True)
                return ingest

    ingest = asyncio.run(scenario())
    assert (ingest.stored, ingest.rejected) == (5, {"unstorable": 1})
    assert sorted(p for _, _, p in rows(database)) == [1, 2, 3, 4, 5]
    with database.unit_of_work() as s:
        assert set(s.scalars(select(Device.online_state))) == {OnlineState.ONLINE}
