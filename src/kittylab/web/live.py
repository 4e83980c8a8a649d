"""The floor's live feed (issue 17): device states, and who is present in each zone,
pushed to every open console.

Two sources of ``DeviceUpdate``, one stream (with the ``PresenceUpdate``s below):

- the bus: a state a self-reporting device (the ``simulated`` and ``mqtt`` integrations)
  publishes on ``kitty/devices/<id>/state`` is pushed the moment it arrives — the same
  message the telemetry ingest stores, so the screen never waits for the database;
- the records: the devices' stored online state and latest ``state`` telemetry are read
  once for all consoles, and what changed is pushed (polled integrations such as
  OctoPrint, and a device going offline): at once when a state that did not come over the
  bus is stored (``kittylab_states``, ``adapters.db.change_signal``: any process storing
  it), and every ``refresh_seconds`` in any case (online states, a missed notification).

One reader serves every open console, and it runs only while someone is watching: fifty
open tablets cost one query every couple of seconds, not fifty. A console that cannot keep
up (its queue full) loses the oldest updates and is marked ``lagged``, never blocks the
others; its stream then sends every tile again.

Who is present: when a presence observation is stored by any process (``kittylab_presence``),
the reader re-reads every zone's present people once for all consoles and pushes a
``PresenceUpdate`` for each zone whose line changed. Nothing is polled for it: a presence
that lapses by its time to live alone (no check-out) shows at the next change or page load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.devices.poller import SELF_REPORTING
from kittylab.domain import topics
from kittylab.domain.enums import OnlineState
from kittylab.ports import MessageBus
from kittylab.web.floor import latest_states, present_names

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
COALESCE_SECONDS = 0.05
"""A burst of stored states (a poll round) makes one read, not one per state."""


@dataclass(frozen=True)
class DeviceUpdate:
    device_id: UUID
    online_state: OnlineState
    state: dict[str, Any] | None
    reported_at: datetime | None


@dataclass(frozen=True)
class PresenceUpdate:
    """Who is present in a zone now (display names, sorted): its "present:" line."""

    zone_id: UUID
    present: tuple[str, ...]


@dataclass(eq=False)  # one per console: compared (and hashed) by identity
class Subscription:
    queue: asyncio.Queue[DeviceUpdate | PresenceUpdate]
    lagged: bool = False
    """Updates were dropped: the console should reload its tiles."""


class FloorFeed:
    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        *,
        refresh_seconds: float = 2.0,
        presence_ttl: timedelta = timedelta(0),
    ) -> None:
        self._database = database
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._subscriptions: set[Subscription] = set()
        self._known: dict[UUID, DeviceUpdate] = {}
        self._by_external_id: dict[str, UUID] = {}
        self._reader: asyncio.Task[None] | None = None
        self._due = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unobserve: Callable[[], None] | None = None
        self._presence_ttl = presence_ttl
        self._present: dict[UUID, tuple[str, ...]] = {}
        self._presence_due = False
        self._unobserve_presence: Callable[[], None] | None = None

    def attach(self, bus: MessageBus) -> None:
        bus.subscribe(topics.DEVICE_STATE_WILDCARD, self._on_state)

    @property
    def watching(self) -> int:
        return len(self._subscriptions)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A queue of updates for one console, for as long as the block runs (on the
        server's event loop)."""
        subscription = Subscription(asyncio.Queue(QUEUE_SIZE))
        self._subscriptions.add(subscription)
        if self._reader is None or self._reader.done():
            self._loop = asyncio.get_running_loop()
            self._due = asyncio.Event()
            if self._unobserve is None:
                self._unobserve = change_signal.observe(change_signal.STATES, self._stored)
            if self._unobserve_presence is None:
                self._unobserve_presence = change_signal.observe(
                    change_signal.PRESENCE, self._presence_stored
                )
            self._present = {}  # nobody watched: what pages show is re-read at the next change
            self._reader = self._loop.create_task(
                self._read_while_watched(), name="console-floor-feed"
            )
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def _stored(self) -> None:
        """A state was stored somewhere (the listener's loop, maybe another thread)."""
        loop = self._loop
        if loop is not None and self._subscriptions:
            loop.call_soon_threadsafe(self._due.set)

    def _presence_stored(self) -> None:
        """A presence observation was stored somewhere (as ``_stored``)."""
        loop = self._loop
        if loop is not None and self._subscriptions:
            loop.call_soon_threadsafe(self._presence_is_due)

    def _presence_is_due(self) -> None:
        self._presence_due = True
        self._due.set()

    def _push(self, update: DeviceUpdate | PresenceUpdate) -> None:
        if isinstance(update, DeviceUpdate):
            self._known[update.device_id] = update
        for subscription in self._subscriptions:
            queue = subscription.queue
            if queue.full():
                queue.get_nowait()
                subscription.lagged = True
            queue.put_nowait(update)

    async def _on_state(self, topic: str, payload: bytes) -> None:
        if not self._subscriptions:
            return
        external_id = topics.device_of(topic)
        device_id = self._by_external_id.get(external_id or "")
        if device_id is None or not payload:
            return
        try:
            state = json.loads(payload)
        except ValueError:
            return  # the ingest logs bad states; the tile keeps the last good one
        if not isinstance(state, dict):
            return
        known = self._known.get(device_id)
        # A report means online, except for a device in fault: only its integration clears that.
        fault = known is not None and known.online_state is OnlineState.FAULT
        online = OnlineState.FAULT if fault else OnlineState.ONLINE
        self._push(DeviceUpdate(device_id, online, state, self._clock()))

    async def _read_while_watched(self) -> None:
        while self._subscriptions:
            self._due.clear()
            try:
                rows = await asyncio.to_thread(self._read)
            except Exception:
                log.exception("the floor feed could not read the devices; retrying")
            else:
                for update in rows:
                    if self._changed(update):
                        self._push(update)
            if self._presence_due:
                self._presence_due = False
                try:
                    present = await asyncio.to_thread(self._read_presence)
                except Exception:
                    log.exception("the floor feed could not read who is present")
                    self._presence_due = True
                else:
                    for zone_id, names in present.items():
                        if self._present.get(zone_id) != names:
                            self._present[zone_id] = names
                            self._push(PresenceUpdate(zone_id, names))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._refresh_seconds)
            if self._due.is_set():
                await asyncio.sleep(COALESCE_SECONDS)

    def _changed(self, update: DeviceUpdate) -> bool:
        known = self._known.get(update.device_id)
        if known is None:
            self._known[update.device_id] = update  # the page rendered it already
            return False
        if known.online_state != update.online_state:
            return True
        # A state stored after the one on screen (the bus already showed newer ones).
        newer = update.reported_at is not None and (
            known.reported_at is None or update.reported_at > known.reported_at
        )
        return newer and update.state != known.state

    def _read_presence(self) -> dict[UUID, tuple[str, ...]]:
        with self._database.unit_of_work() as session:
            present = present_names(session, self._clock(), self._presence_ttl)
        return {zone_id: tuple(names) for zone_id, names in present.items()}

    def _read(self) -> list[DeviceUpdate]:
        with self._database.unit_of_work() as session:
            devices = session.execute(
                select(
                    Device.id, Device.external_id, Device.integration, Device.online_state
                ).where(Device.retired_at.is_(None))
            ).all()
            latest = latest_states(session, [d.id for d in devices])
        self._by_external_id = {
            d.external_id: d.id for d in devices if d.integration in SELF_REPORTING
        }
        updates = []
        for d in devices:
            state, reported_at = latest.get(d.id, (None, None))
            updates.append(DeviceUpdate(d.id, d.online_state, state, reported_at))
        return updates
