"""Tell every process when the lab or its people change, so what they cache stays true.

A transaction that changes the lab (zones, devices, access policies) or its people (users,
API tokens) sends a PostgreSQL ``NOTIFY`` on ``kittylab_lab`` or ``kittylab_people`` as
part of itself: delivered when, and only if, it commits, to every process listening —
``kittylab serve`` listens (``listen``), whichever process made the change (the CLI's
``lab apply``, another server, this one).

What it drives:

- *generations* (``generation(channel)``): a counter per channel, bumped in this process
  right after a local commit that changed the channel, and by the listener for anyone's.
  A cache remembers the generation it was filled at and is stale once it moved on: the
  token → principal cache (``people.principal_cache``), the lab vocabulary.
- *callbacks*: ``listen`` calls its handlers on each notification (the simulated fleet
  reloads and reports at once, so a newly applied lab is online within a second), and
  whatever ``observe`` registered (the console's live feed re-reads the devices' states).

A third channel, ``kittylab_states``, says a device state was stored that did not come
over the bus (a polled integration, the API's telemetry, a print job's tracker): the
console's live feed re-reads at once instead of at its next round, so a stored state is
on screen within a fraction of a second (``devices.telemetry`` marks it).

A fourth, ``kittylab_presence``, says a presence observation was stored (a check-in or out
by any path: the API, the CLI, the console's desks, UniFi Access, an override, a
confirmation): every presence write is a ``zone_presence`` row, so it is sent by the same
watch as the lab's, and the console's floor re-reads its "present:" lines (issue 17).

Caches are used only while ``listening()`` is true: a process without a live listener
(the CLI, a test client, a server whose database connection dropped) cannot hear another
process's change, so it reads the database every time. On (re)connecting the listener
bumps every generation: what it may have missed is forgotten.

Changes a device's own reports make (``online_state``, ``last_seen``: every telemetry
batch) and a token's ``last_used_at`` touch are not lab or people changes and send nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction
from sqlalchemy.sql.dml import UpdateBase

from kittylab.adapters.db.tables import AccessPolicy, ApiToken, Device, User, Zone, ZonePresence
from kittylab.adapters.db.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

LAB = "kittylab_lab"
PEOPLE = "kittylab_people"
STATES = "kittylab_states"
PRESENCE = "kittylab_presence"
CHANNELS = (LAB, PEOPLE, STATES, PRESENCE)

_WATCHED: dict[type[Any], str] = {
    Zone: LAB,
    Device: LAB,
    AccessPolicy: LAB,
    User: PEOPLE,
    ApiToken: PEOPLE,
    ZonePresence: PRESENCE,
}
_REPORTED: dict[type[Any], frozenset[str]] = {
    Device: frozenset({"online_state", "last_seen"}),
    ApiToken: frozenset({"last_used_at"}),
}
"""Columns whose change is a report or a touch, not a change of the lab or its people."""
# By table name: a statement's table may be an annotated copy of the model's.
_TABLES: dict[str, str] = {model.__tablename__: channel for model, channel in _WATCHED.items()}
_REPORTED_COLUMNS: dict[str, frozenset[str]] = {
    model.__tablename__: columns for model, columns in _REPORTED.items()
}

_INFO_KEY = "kittylab_changed_channels"
_lock = threading.Lock()
_generations: dict[str, int] = dict.fromkeys(CHANNELS, 0)
_listeners = 0
_observers: dict[str, list[Callable[[], None]]] = {channel: [] for channel in CHANNELS}


def generation(channel: str) -> int:
    """How many changes of ``channel`` this process has heard of (see the module doc)."""
    return _generations[channel]


def listening() -> bool:
    """Whether a listener is connected, so that other processes' changes are heard."""
    return _listeners > 0


def bump(channels: Iterable[str]) -> None:
    with _lock:
        for channel in channels:
            _generations[channel] += 1


def observe(channel: str, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (cheap, thread-safe, from the listener's loop) whenever a
    notification on ``channel`` is heard; returns what stops it."""
    with _lock:
        _observers[channel].append(callback)

    def stop() -> None:
        with _lock:
            if callback in _observers[channel]:
                _observers[channel].remove(callback)

    return stop


def _tell_observers(channel: str) -> None:
    with _lock:
        callbacks = list(_observers.get(channel, ()))
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one observer's fault is its own
            log.exception("an observer of %s failed", channel)


# -- the sending side: every unit of work ---------------------------------------------


def _mark(session: Session, channel: str) -> None:
    session.info.setdefault(_INFO_KEY, set()).add(channel)


def mark(session: Session, channel: str) -> None:
    """Notify ``channel`` when ``session``'s transaction commits (and only then)."""
    _mark(session, channel)


def _changed_columns(obj: object) -> set[str]:
    from sqlalchemy import inspect

    state = inspect(obj)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


@event.listens_for(UnitOfWork, "before_flush")
def _note_changes(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    for obj in session.new | session.deleted:
        channel = _WATCHED.get(type(obj))
        if channel is not None:
            _mark(session, channel)
    for obj in session.dirty:
        channel = _WATCHED.get(type(obj))
        if channel is None or not session.is_modified(obj):
            continue
        if _changed_columns(obj) - _REPORTED.get(type(obj), frozenset()):
            _mark(session, channel)


@event.listens_for(UnitOfWork, "do_orm_execute")
def _note_bulk_changes(state: ORMExecuteState) -> None:
    """``update(User)…`` / ``delete(ApiToken)…`` issued as statements."""
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    statement = state.statement
    if not isinstance(statement, UpdateBase):
        return
    name = getattr(statement.table, "name", None)
    channel = _TABLES.get(name) if isinstance(name, str) else None
    if channel is None:
        return
    if state.is_update:
        values = getattr(statement, "_values", None) or {}
        columns = {getattr(key, "key", str(key)) for key in values}
        if columns and columns <= _REPORTED_COLUMNS.get(str(name), frozenset()):
            return
    _mark(state.session, channel)


@event.listens_for(UnitOfWork, "before_commit")
def _notify(session: Session) -> None:
    session.flush()  # the commit would flush next; what that flush changes counts too
    for channel in sorted(session.info.get(_INFO_KEY, ())):
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@event.listens_for(UnitOfWork, "after_commit")
def _committed(session: Session) -> None:
    channels = session.info.pop(_INFO_KEY, None)
    if channels:
        bump(channels)


@event.listens_for(UnitOfWork, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint's rollback keeps the outer marks: at worst one notification too many.
    if not previous_transaction.nested:
        session.info.pop(_INFO_KEY, None)


# -- the listening side: kittylab serve -------------------------------------------------

Handler = Callable[[], Awaitable[None]]
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


async def listen(database_url: str, handlers: Mapping[str, Handler]) -> None:
    """Listen on every channel of ``database_url`` (a libpq URL) until cancelled,
    reconnecting when the connection drops. Each notification bumps its channel's
    generation and has its handler run: one run at a time per channel, and a burst of
    changes during a run makes one more run, not one per change. On every (re)connect
    each handler runs once, for whatever happened while nobody listened."""
    followers = {channel: _Follower(channel, h) for channel, h in handlers.items()}
    runners = [asyncio.create_task(f.run(), name=f"follow-{c}") for c, f in followers.items()]
    try:
        await _listen(database_url, followers)
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)


async def _listen(database_url: str, followers: Mapping[str, _Follower]) -> None:
    global _listeners
    attempt = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, application_name="kittylab-changes"
            ) as conn:
                for channel in CHANNELS:
                    await conn.execute(f"LISTEN {channel}")
                with _lock:
                    _listeners += 1
                try:
                    attempt = 0
                    bump(CHANNELS)
                    for follower in followers.values():
                        follower.due.set()
                    for missed in (STATES, PRESENCE):  # stored while nobody listened
                        _tell_observers(missed)
                    async for note in conn.notifies():
                        bump([note.channel])
                        noted = followers.get(note.channel)
                        if noted is not None:
                            noted.due.set()
                        _tell_observers(note.channel)
                finally:
                    with _lock:
                        _listeners -= 1
                    bump(CHANNELS)  # from now on nothing may be trusted from a cache
        except (psycopg.Error, OSError) as exc:
            pause = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
            attempt += 1
            log.warning("change listener lost its connection (%s); again in %.1f s", exc, pause)
            await asyncio.sleep(pause)


class _Follower:
    """Runs one channel's handler whenever ``due`` is set, one run at a time."""

    def __init__(self, channel: str, handler: Handler) -> None:
        self.channel = channel
        self.handler = handler
        self.due = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.due.wait()
            self.due.clear()
            try:
                await self.handler()
            except Exception:  # the next change tries again; the listener carries on
                log.exception("following a change on %s failed", self.channel)
