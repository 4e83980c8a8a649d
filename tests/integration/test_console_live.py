"""The console's live feed (issue 17 targets: a state change on screen within 0.5 s of
being stored): a state stored by any process for a device that does not report itself on
the bus (a polled integration, the API) is pushed at once, by the ``kittylab_states``
notification, not at the feed's next round; states that came over the bus (pushed as they
arrived) notify nothing. A check-in or out (``kittylab_presence``) sends the zone's new
"present:" line."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.db.tables import Device, Zone
from kittylab.api.routers.console import _render_present, _sse
from kittylab.devices import telemetry
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import PresenceStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity, presence
from kittylab.web.live import FloorFeed, PresenceUpdate, Subscription
from tests.integration.test_change_signal import _until

ROUND = 30.0
"""The feed's own rounds, far apart: only the notification can explain a prompt push."""


def _store(database: Database, device_id: UUID, state: dict[str, object]) -> None:
    with database.unit_of_work() as session:
        event = telemetry.IncomingEvent(device_id, None, telemetry.STATE_TOPIC, state, None)
        assert telemetry.store_stream(session, [event], utcnow()).stored == 1


def test_a_polled_devices_stored_state_is_pushed_at_once_and_a_bus_state_notifies_nothing(
    database: Database, database_url: str, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as session:
        apply_manifest(session, load_manifest(demo_lab_path), utcnow())
        lights = session.scalar(select(Device).where(Device.external_id == "farm-lights"))
        assert lights is not None
        lights.integration = "homeassistant"  # asked, not told: its state comes from a poll
        simulated = session.scalar(select(Device.id).where(Device.external_id == "cnc-lights"))
        polled = lights.id
    assert simulated is not None

    before = change_signal.generation(change_signal.STATES)
    _store(database, simulated, {"on": True})  # came over the bus: already on screen
    assert change_signal.generation(change_signal.STATES) == before

    async def scenario() -> float:
        listener = asyncio.create_task(change_signal.listen(libpq_url(database_url), {}))
        feed = FloorFeed(database, utcnow, refresh_seconds=ROUND)
        try:
            await _until(change_signal.listening)
            with feed.subscribe() as subscription:
                await _until(lambda: polled in feed._known)  # the first round, on screen
                stored = time.monotonic()
                await asyncio.to_thread(_store, database, polled, {"on": True, "brightness": 30})
                while True:
                    update = await asyncio.wait_for(subscription.queue.get(), 5)
                    if update.device_id == polled:
                        assert update.state == {"on": True, "brightness": 30}
                        return time.monotonic() - stored
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    assert asyncio.run(scenario()) < 0.5


def _check(database: Database, zone_id: UUID, user_id: UUID, status: PresenceStatus) -> None:
    with database.unit_of_work() as session:
        presence.record_manual(
            session, zone_id=zone_id, user_id=user_id, status=status, now=utcnow()
        )


def test_a_check_in_and_out_notifies_and_the_floor_is_sent_the_zones_new_present_line(
    database: Database, database_url: str, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as session:
        apply_manifest(session, load_manifest(demo_lab_path), utcnow())
        zone_id = session.scalar(select(Zone.id).order_by(Zone.name).limit(1))
        user = identity.create_user(
            session, username="pia", display_name="Pia Lund", roles=["operator"]
        )
        user_id = user.id
    assert zone_id is not None

    before = change_signal.generation(change_signal.PRESENCE)
    _check(database, zone_id, user_id, PresenceStatus.PRESENT)  # any path: one row, one NOTIFY
    assert change_signal.generation(change_signal.PRESENCE) == before + 1

    async def next_line(subscription: Subscription) -> PresenceUpdate:
        while True:
            update = await asyncio.wait_for(subscription.queue.get(), 5)
            if isinstance(update, PresenceUpdate) and update.zone_id == zone_id:
                return update

    async def scenario() -> tuple[list[PresenceUpdate], float]:
        listener = asyncio.create_task(change_signal.listen(libpq_url(database_url), {}))
        feed = FloorFeed(database, utcnow, refresh_seconds=ROUND, presence_ttl=timedelta(hours=1))
        try:
            await _until(change_signal.listening)
            with feed.subscribe() as subscription:
                await _until(lambda: bool(feed._known))  # the first round has run
                stored = time.monotonic()
                await asyncio.to_thread(_check, database, zone_id, user_id, PresenceStatus.VACATED)
                out = await next_line(subscription)
                took = time.monotonic() - stored
                await asyncio.to_thread(_check, database, zone_id, user_id, PresenceStatus.PRESENT)
                back = await next_line(subscription)
                return [out, back], took
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    (out, back), took = asyncio.run(scenario())
    assert took < 1.0
    assert out.present == ()
    assert back.present == ("Pia Lund",)
    # The stream's event carries the line as the floor renders it at load.
    assert _render_present(out.present).strip() == "nobody checked in"
    assert _render_present(back.present).strip() == "present: Pia Lund"
    frame = _sse(f"zone-{zone_id}-presence", _render_present(back.present))
    assert frame == f"event: zone-{zone_id}-presence\ndata: present: Pia Lund\n\n"
