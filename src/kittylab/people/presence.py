"""Presence observations and the questions "who is in this zone now" and "whose presence
counts for hazardous work here".

Five sources write observations, each audited (``presence.recorded``,
``presence.confirmed`` or ``presence.override``) in the same transaction as the row it
records:

- ``record_manual``: a person checks in or out (or the safety role does it for them);
- ``record_confirmed``: someone already present in the zone (by a source that counts
  there) confirms another person's check-in;
- ``record_unifi``: a signature-verified UniFi Access door event (see
  ``kittylab.safety.webhook_signature`` and ``kittylab.domain.unifi_access``);
- ``record_override``: the safety role states someone's presence, which also leaves an
  approved ``SafetyEvent`` of type ``override`` naming who did it and why;
- ``record_terminal``: a person taps their own security key on the zone's paired wall
  terminal (issue 18, ``people.terminals``) to check in or out there.

Each zone says which sources count there (``Zone.presence_sources``, by default its hazard
level's: ``kittylab.domain.zones.DEFAULT_PRESENCE_SOURCES``). ``user_is_present`` and
``occupancy(...).present`` answer from every source (who is in the room);
``counts_as_present`` and ``occupancy(...).counting`` from the counting ones only, and
every policy that requires presence asks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import exists, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AuditEntry, SafetyEvent, User, Zone, ZonePresence
from kittylab.domain.enums import PresenceSource, PresenceStatus, SafetyEventType, SafetyStatus
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.unifi_access import DoorEvent
from kittylab.domain.zones import (
    PresenceObservation,
    is_present,
    presence_sources,
    standing_override,
    zones_to_end,
)
from kittylab.domain.zones import counts_as_present as counts_as_present_rule
from kittylab.records import audit
from kittylab.safety import event_details
from kittylab.safety.event_details import EventDetails

RECORDED = "presence.recorded"
CONFIRMED = "presence.confirmed"
OVERRIDE = "presence.override"
# A check-in elsewhere ended this one (a person is in one zone at a time).
ENDED = "presence.ended"
# The audit subject of a UniFi observation is the UniFi event id, so a redelivery of the
# same event is found by an indexed lookup and recorded once.
UNIFI_SUBJECT = "unifi_event"
# Namespace of the per-event advisory lock (two-int form; the audit chain uses the
# one-bigint form, a separate key space).
_UNIFI_LOCK_NAMESPACE = 0x0A11
# Namespace of the per-person lock that serialises one person's observations, so two
# concurrent check-ins cannot both leave the person present in two zones.
_PERSON_LOCK_NAMESPACE = 0x0A12

UNIFI_EVENTS = Counter(
    "kittylab_unifi_webhook_events_total",
    "UniFi Access webhook deliveries by outcome (recorded, duplicate, ignored reasons, "
    "refused_<reason> for signature refusals).",
    ["outcome"],
)


def _require(session: Session, zone_id: UUID, user_id: UUID) -> None:
    if session.get(Zone, zone_id) is None:
        raise NotFound("zone", zone_id)
    if session.get(User, user_id) is None:
        raise NotFound("user", user_id)


def _details(row: ZonePresence) -> dict[str, str]:
    return {
        "source": row.source.value,
        "status": row.status.value,
        "zone_id": str(row.zone_id),
        "user_id": str(row.user_id),
        "presence_id": str(row.id),
    }


def record_manual(
    session: Session,
    *,
    zone_id: UUID,
    user_id: UUID,
    status: PresenceStatus,
    now: datetime,
    actor_id: UUID | None = None,
) -> ZonePresence:
    """A check-in (``present``) or check-out (``vacated``) by hand. ``actor_id`` is who
    recorded it (defaults to the person themselves).

    A check-in is refused (``Conflict`` naming ``status``) while a safety override that
    says the person is not in the zone stands: only a badge or another override sees
    them again (``kittylab.domain.zones.standing_override``)."""
    return _check_in_or_out(
        session, zone_id, user_id, PresenceSource.MANUAL, status, now, actor_id or user_id
    )


def record_terminal(
    session: Session,
    *,
    zone_id: UUID,
    user_id: UUID,
    terminal_id: UUID,
    status: PresenceStatus,
    now: datetime,
) -> ZonePresence:
    """A check-in or check-out the person made with their own security key on the wall
    terminal ``terminal_id``, paired to ``zone_id`` (``people.terminals`` checks that).
    Audited as ``presence.recorded`` naming the terminal. Refused under a standing
    override like a check-in by hand (fail closed: only a badge or another override sees
    the person again)."""
    return _check_in_or_out(
        session,
        zone_id,
        user_id,
        PresenceSource.TERMINAL,
        status,
        now,
        user_id,
        {"terminal_id": str(terminal_id)},
    )


def _check_in_or_out(
    session: Session,
    zone_id: UUID,
    user_id: UUID,
    source: PresenceSource,
    status: PresenceStatus,
    now: datetime,
    actor_id: UUID,
    more: dict[str, str] | None = None,
) -> ZonePresence:
    """A person's own check-in or out (by hand or on a terminal), refused under a
    standing override, audited as ``presence.recorded``."""
    _require(session, zone_id, user_id)
    _lock_person(session, user_id)
    if status is PresenceStatus.PRESENT:
        _refuse_over_override(session, zone_id, user_id)
    row = _observe(session, zone_id, user_id, source, status, now, actor_id)
    audit.append(
        session,
        action=RECORDED,
        actor_id=actor_id,
        now=now,
        subject_type="zone_presence",
        subject_id=row.id,
        details=_details(row) | (more or {}),
    )
    return row


def _refuse_over_override(session: Session, zone_id: UUID, user_id: UUID) -> None:
    mine = select(ZonePresence).where(
        ZonePresence.zone_id == zone_id, ZonePresence.user_id == user_id
    )
    # The newest override (a vacated one first at the same instant) and the newest badge
    # that saw the person here: all the domain rule needs.
    newest = [
        session.scalars(
            mine.where(ZonePresence.source == PresenceSource.OVERRIDE)
            .order_by(
                ZonePresence.observed_at.desc(),
                (ZonePresence.status == PresenceStatus.PRESENT).asc(),
            )
            .limit(1)
        ).first(),
        session.scalars(
            mine.where(
                ZonePresence.source == PresenceSource.UNIFI,
                ZonePresence.status == PresenceStatus.PRESENT,
            )
            .order_by(ZonePresence.observed_at.desc())
            .limit(1)
        ).first(),
    ]
    observations = [
        PresenceObservation(r.user_id, r.zone_id, r.source, r.status, r.observed_at)
        for r in newest
        if r is not None
    ]
    stands = standing_override(observations, user_id, zone_id)
    if stands is None:
        return
    zone = session.get(Zone, zone_id)
    name = zone.name if zone is not None else str(zone_id)
    raise Conflict(
        f"a safety override recorded at {stands.observed_at.isoformat()} says this "
        f"person is not in {name}; a check-in by hand does not undo it. Badge in at the "
        "door, or ask the safety role to override presence again",
        field="status",
    )


class UnifiOutcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    NOT_DOOR_ACCESS = "not_door_access"
    DENIED = "access_denied"
    NO_DOOR = "no_door"
    NO_ACTOR = "no_actor"
    UNKNOWN_DOOR = "unknown_door"
    AMBIGUOUS_DOOR = "ambiguous_door"
    UNKNOWN_ACTOR = "unknown_actor"
    INACTIVE_USER = "inactive_user"

    @property
    def recorded(self) -> bool:
        return self is UnifiOutcome.RECORDED


@dataclass(frozen=True)
class UnifiResult:
    outcome: UnifiOutcome
    reason: str
    presence: ZonePresence | None = None
    zone_id: UUID | None = None
    user_id: UUID | None = None


def record_unifi(session: Session, event: DoorEvent, now: datetime) -> UnifiResult:
    """Record what a verified UniFi Access event says about presence.

    A granted ``access.door.unlock`` at a door listed by exactly one zone, by a UniFi user
    mapped to an active KittyLab user, records ``present`` in that zone at ``now`` (the
    server's clock: the event's own times are the controller's). Anything else records
    nothing and says why; a door listed by several zones is not guessed at. An event id
    already recorded is a redelivery (``DUPLICATE``); events without an id cannot be told
    apart, and recording one twice is harmless (a second observation of the same fact)."""
    result = _classify(session, event)
    if isinstance(result, UnifiResult):
        UNIFI_EVENTS.labels(result.outcome.value).inc()
        return result
    zone, user = result
    if event.event_id is not None:
        # Concurrent redeliveries of one event wait here for each other, so the second
        # sees the first's audit entry instead of recording again.
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"),
            {"ns": _UNIFI_LOCK_NAMESPACE, "key": event.event_id},
        )
        seen = session.scalar(
            select(
                exists().where(
                    AuditEntry.subject_id == event.event_id,
                    AuditEntry.subject_type == UNIFI_SUBJECT,
                    AuditEntry.action == RECORDED,
                )
            )
        )
        if seen:
            UNIFI_EVENTS.labels(UnifiOutcome.DUPLICATE.value).inc()
            return UnifiResult(
                UnifiOutcome.DUPLICATE,
                f"event {event.event_id} was already recorded",
                zone_id=zone.id,
                user_id=user.id,
            )
    row = _observe(
        session, zone.id, user.id, PresenceSource.UNIFI, PresenceStatus.PRESENT, now, None
    )
    audit.append(
        session,
        action=RECORDED,
        actor_id=None,  # the UniFi integration, not a person, made this observation
        now=now,
        subject_type=UNIFI_SUBJECT if event.event_id else "zone_presence",
        subject_id=event.event_id or row.id,
        details={**_details(row), "door_id": event.door_id or "", "unifi_event": event.event},
    )
    UNIFI_EVENTS.labels(UnifiOutcome.RECORDED.value).inc()
    return UnifiResult(
        UnifiOutcome.RECORDED,
        f"{user.display_name} is present in {zone.name}",
        presence=row,
        zone_id=zone.id,
        user_id=user.id,
    )


def _classify(session: Session, event: DoorEvent) -> UnifiResult | tuple[Zone, User]:
    """The zone and user the event is about, or why it records nothing."""
    if not event.is_door_access:
        return UnifiResult(
            UnifiOutcome.NOT_DOOR_ACCESS,
            f"{event.event!r} does not report a door access; only access.door.unlock does",
        )
    if not event.granted:
        return UnifiResult(
            UnifiOutcome.DENIED,
            f"the door did not open (result {event.result or 'missing'}); nothing recorded",
        )
    if event.door_id is None:
        return UnifiResult(UnifiOutcome.NO_DOOR, "the event names no door (data.location.id)")
    if event.actor_id is None:
        return UnifiResult(UnifiOutcome.NO_ACTOR, "the event names no person (data.actor.id)")
    zones = session.scalars(
        select(Zone).where(Zone.unifi_door_ids.contains([event.door_id])).order_by(Zone.name)
    ).all()
    if not zones:
        return UnifiResult(
            UnifiOutcome.UNKNOWN_DOOR,
            f"door {event.door_id} is in no zone's unifi_door_ids",
        )
    if len(zones) > 1:
        names = ", ".join(z.name for z in zones)
        return UnifiResult(
            UnifiOutcome.AMBIGUOUS_DOOR,
            f"door {event.door_id} is listed by several zones ({names}); list it in one",
        )
    zone = zones[0]
    user = session.scalars(select(User).where(User.unifi_user_id == event.actor_id)).first()
    if user is None:
        return UnifiResult(
            UnifiOutcome.UNKNOWN_ACTOR,
            f"UniFi user {event.actor_id} is no KittyLab user's unifi_id",
            zone_id=zone.id,
        )
    if not user.active:
        return UnifiResult(
            UnifiOutcome.INACTIVE_USER,
            f"UniFi user {event.actor_id} belongs to {user.username}, who is deactivated",
            zone_id=zone.id,
            user_id=user.id,
        )
    return zone, user


@dataclass(frozen=True)
class OverrideResult:
    presence: ZonePresence
    event: SafetyEvent


def record_override(
    session: Session,
    *,
    zone_id: UUID,
    user_id: UUID,
    status: PresenceStatus,
    reason: str,
    by: UUID,
    now: datetime,
) -> OverrideResult:
    """The safety role states a person's presence (a badge reader is down, someone left
    without badging out). Records the observation, an approved ``override`` safety event
    that names who decided it and why, and a ``presence.override`` audit entry. The
    caller checks the role; this checks the facts."""
    _require(session, zone_id, user_id)
    why = sanitize_text(reason, 2000).strip()
    if not why:
        raise ValidationFailed("reason", "say why presence is overridden")
    row = _observe(session, zone_id, user_id, PresenceSource.OVERRIDE, status, now, by)
    event = SafetyEvent(
        event_type=SafetyEventType.OVERRIDE,
        zone_id=zone_id,
        initiated_by=by,
        approved_by=by,
        signature=None,
        status=SafetyStatus.APPROVED,
        reason=why,
        details=event_details.new_details(
            EventDetails(
                override="presence",
                user_id=user_id,
                presence_status=status.value,
                presence_id=row.id,
            )
        ),
        created_at=now,
        resolved_at=now,
    )
    session.add(event)
    session.flush()
    audit.append(
        session,
        action=OVERRIDE,
        actor_id=by,
        now=now,
        subject_type="safety_event",
        subject_id=event.id,
        details={**_details(row), "reason": why},
    )
    return OverrideResult(row, event)


def _observations(
    session: Session, zone_id: UUID, since: datetime, user_id: UUID | None = None
) -> list[PresenceObservation]:
    stmt = select(ZonePresence).where(
        ZonePresence.zone_id == zone_id, ZonePresence.observed_at >= since
    )
    if user_id is not None:
        stmt = stmt.where(ZonePresence.user_id == user_id)
    return [
        PresenceObservation(r.user_id, r.zone_id, r.source, r.status, r.observed_at)
        for r in session.scalars(stmt)
    ]


def user_is_present(
    session: Session, user_id: UUID, zone_id: UUID, now: datetime, ttl: timedelta
) -> bool:
    """Whether the person's newest observation in the zone, from any source, says present
    (a self check-in included): who is in the room, not whose presence counts."""
    return is_present(
        _observations(session, zone_id, now - ttl, user_id), user_id, zone_id, now, ttl
    )


def zone_sources(session: Session, zone_id: UUID) -> frozenset[PresenceSource]:
    """The presence sources that count in the zone (``NotFound`` for no zone)."""
    zone = session.get(Zone, zone_id)
    if zone is None:
        raise NotFound("zone", zone_id)
    return presence_sources(zone.hazard_level, zone.presence_sources)


def counts_as_present(
    session: Session, user_id: UUID, zone_id: UUID, now: datetime, ttl: timedelta
) -> bool:
    """Whether the person is present in the zone by a source that counts there: what a
    policy that requires presence asks, at approval and again when the command is sent."""
    return counts_as_present_rule(
        _observations(session, zone_id, now - ttl, user_id),
        user_id,
        zone_id,
        now,
        ttl,
        zone_sources(session, zone_id),
    )


@dataclass(frozen=True)
class Occupancy:
    present: list[UUID]
    """Who is in the zone now, by any source."""
    counting: list[UUID]
    """Whose presence counts there now, by the zone's presence sources."""


def occupancy(session: Session, zone_id: UUID, now: datetime, ttl: timedelta) -> Occupancy:
    """Who is in the zone and whose presence counts, from one read of its observations."""
    sources = zone_sources(session, zone_id)
    observations = _observations(session, zone_id, now - ttl)
    users = sorted({o.user_id for o in observations})
    return Occupancy(
        present=[u for u in users if is_present(observations, u, zone_id, now, ttl)],
        counting=[
            u for u in users if counts_as_present_rule(observations, u, zone_id, now, ttl, sources)
        ],
    )


def record_confirmed(
    session: Session,
    *,
    zone_id: UUID,
    user_id: UUID,
    by: UUID,
    now: datetime,
    ttl: timedelta,
) -> ZonePresence:
    """``by``, present in the zone by a source that counts there, confirms that ``user_id``
    is there too: the person's own check-in (their newest observation in the zone says
    present, within ``ttl``) becomes a ``confirmed`` observation, which counts wherever the
    zone lists ``confirmed``. Audited as ``presence.confirmed`` naming the confirmer.

    ``PermissionDenied``: confirming yourself, or ``by`` is not present there by a counting
    source. ``Conflict`` (field ``userId``): the person has not checked in there (a check-in
    refused under a standing override cannot be confirmed either)."""
    _require(session, zone_id, user_id)
    zone = session.get(Zone, zone_id)
    assert zone is not None  # _require found it
    if by == user_id:
        raise PermissionDenied(
            "you cannot confirm your own check-in: someone already present in "
            f"{zone.name} confirms it"
        )
    _lock_person(session, user_id)
    if not counts_as_present(session, by, zone_id, now, ttl):
        raise PermissionDenied(
            f"only someone present in {zone.name} (by a badge, a confirmed check-in or a "
            "safety override) can confirm a check-in there; you are not"
        )
    if not user_is_present(session, user_id, zone_id, now, ttl):
        person = session.get(User, user_id)
        name = person.display_name if person is not None else str(user_id)
        raise Conflict(
            f"{name} has not checked in to {zone.name}: they check in first, then someone "
            "present confirms it",
            field="userId",
        )
    row = _observe(
        session, zone_id, user_id, PresenceSource.CONFIRMED, PresenceStatus.PRESENT, now, by
    )
    audit.append(
        session,
        action=CONFIRMED,
        actor_id=by,
        now=now,
        subject_type="zone_presence",
        subject_id=row.id,
        details={**_details(row), "confirmed_by": str(by)},
    )
    return row


def _observe(
    session: Session,
    zone_id: UUID,
    user_id: UUID,
    source: PresenceSource,
    status: PresenceStatus,
    now: datetime,
    actor_id: UUID | None,
) -> ZonePresence:
    """Record one observation. A ``present`` one first ends the person's presence in every
    other zone (a ``vacated`` row of the same source, ``manual`` for an override, at the
    same instant, audited as ``presence.ended`` naming the zone entered), under a
    per-person lock."""
    _lock_person(session, user_id)
    if status is PresenceStatus.PRESENT:
        _end_elsewhere(session, zone_id, user_id, source, now, actor_id)
    row = ZonePresence(
        zone_id=zone_id, user_id=user_id, source=source, status=status, observed_at=now
    )
    session.add(row)
    session.flush()
    return row


def _lock_person(session: Session, user_id: UUID) -> None:
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"),
        {"ns": _PERSON_LOCK_NAMESPACE, "key": str(user_id)},
    )


def _end_elsewhere(
    session: Session,
    entering: UUID,
    user_id: UUID,
    source: PresenceSource,
    now: datetime,
    actor_id: UUID | None,
) -> None:
    # The newest observation per zone (a non-present one first at the same instant);
    # the domain rule decides which of them still say present.
    newest = session.scalars(
        select(ZonePresence)
        .where(ZonePresence.user_id == user_id, ZonePresence.zone_id != entering)
        .ext(distinct_on(ZonePresence.zone_id))
        .order_by(
            ZonePresence.zone_id,
            ZonePresence.observed_at.desc(),
            (ZonePresence.status == PresenceStatus.PRESENT).asc(),
        )
    ).all()
    observations = [
        PresenceObservation(r.user_id, r.zone_id, r.source, r.status, r.observed_at) for r in newest
    ]
    # An override elsewhere ends this zone as a plain (manual) check-out: a vacated
    # *override* row here would stand against the person in a zone the safety lead said
    # nothing about. The presence.ended audit entry says what ended it.
    ended_as = PresenceSource.MANUAL if source is PresenceSource.OVERRIDE else source
    for zone_id in zones_to_end(observations, user_id, entering):
        row = ZonePresence(
            zone_id=zone_id,
            user_id=user_id,
            source=ended_as,
            status=PresenceStatus.VACATED,
            observed_at=now,
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            action=ENDED,
            actor_id=actor_id,
            now=now,
            subject_type="zone_presence",
            subject_id=row.id,
            details={**_details(row), "ended_by_zone_id": str(entering)},
        )
