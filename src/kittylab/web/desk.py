"""What the safety desk's boards show (issue 17, item 5), each read in one short
transaction: the locks board, the presence board, the audit log page and the
confirmations waiting for a second person (approval keys, role grants).

Who may do what is the rules' own (``domain.duties``, ``safety.lockout``): a row says
whether the viewer may act on it and, when not, why, so the page shows a button only
where the server would accept it (and the server checks again)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    Device,
    DeviceLock,
    Passkey,
    RoleGrant,
    SafetyEvent,
    User,
    UserKey,
    Zone,
    ZonePresence,
)
from kittylab.domain import duties
from kittylab.domain.duties import GrantStatus
from kittylab.domain.enums import HazardLevel, PresenceSource, PresenceStatus, Role, SafetyStatus
from kittylab.domain.principal import Principal
from kittylab.domain.zones import (
    PresenceObservation,
    counts_as_present,
    is_present,
    presence_sources,
)
from kittylab.records import audit
from kittylab.safety import keys, passkey_approvals
from kittylab.safety.lockout import LockFact, removal_refusal

# --- the locks board -------------------------------------------------------------------


@dataclass(frozen=True)
class LockRow:
    id: UUID
    device_id: UUID
    device: str
    """The device's name, as the floor shows it."""
    device_external_id: str
    zone: str
    owner: str
    reason: str
    placed_at: datetime
    own: bool
    may_override: bool
    """Someone else's lock that the viewer (the safety role) may take off with a reason."""
    why_not: str | None
    """Why the viewer may not take it off at all (``safety.lockout``); ``None``: they may."""


@dataclass(frozen=True)
class LockableDevice:
    id: UUID
    label: str
    zone: str
    mine: bool
    """The viewer already holds a lock on it."""


def active_locks(session: Session, viewer: Principal) -> list[LockRow]:
    """Every lock that is on, by zone, then device, then when it was placed."""
    rows = session.execute(
        select(DeviceLock, Device, Zone.name, User.display_name)
        .join(Device, Device.id == DeviceLock.device_id)
        .join(Zone, Zone.id == Device.zone_id)
        .join(User, User.id == DeviceLock.owner_id)
        .where(DeviceLock.removed_at.is_(None))
        .order_by(Zone.name, Device.display_name, DeviceLock.placed_at)
    ).all()
    found = []
    for lock, device, zone, owner in rows:
        own = lock.owner_id == viewer.user_id
        fact = LockFact(
            lock.id, lock.owner_id, owner, lock.reason, lock.placed_at, device.external_id
        )
        overridable = removal_refusal(fact, viewer.user_id, viewer.roles, override=True)
        found.append(
            LockRow(
                id=lock.id,
                device_id=device.id,
                device=device.display_name,
                device_external_id=device.external_id,
                zone=zone,
                owner=owner,
                reason=lock.reason,
                placed_at=lock.placed_at,
                own=own,
                may_override=not own and overridable is None,
                why_not=None if own or overridable is None else overridable,
            )
        )
    return found


def lockable_devices(session: Session, locks: list[LockRow]) -> list[LockableDevice]:
    """Every active device, for the "place my lock" form, by zone and name."""
    mine = {row.device_id for row in locks if row.own}
    rows = session.execute(
        select(Device.id, Device.display_name, Device.external_id, Zone.name)
        .join(Zone, Zone.id == Device.zone_id)
        .where(Device.retired_at.is_(None))
        .order_by(Zone.name, Device.display_name)
    ).all()
    return [
        LockableDevice(r.id, f"{r.display_name} ({r.external_id})", r.name, r.id in mine)
        for r in rows
    ]


@dataclass(frozen=True)
class RemovedLock:
    device: str
    owner: str
    reason: str
    placed_at: datetime
    removed_at: datetime
    removed_by: str
    overridden: bool


def recently_removed(session: Session, limit: int = 8) -> list[RemovedLock]:
    remover = User.__table__.alias("remover")
    rows = session.execute(
        select(DeviceLock, Device.display_name, User.display_name, remover.c.display_name)
        .join(Device, Device.id == DeviceLock.device_id)
        .join(User, User.id == DeviceLock.owner_id)
        .outerjoin(remover, remover.c.id == DeviceLock.removed_by)
        .where(DeviceLock.removed_at.is_not(None))
        .order_by(DeviceLock.removed_at.desc())
        .limit(limit)
    ).all()
    return [
        RemovedLock(
            device=device,
            owner=owner,
            reason=lock.reason,
            placed_at=lock.placed_at,
            removed_at=lock.removed_at,
            removed_by=removed_by or "?",
            overridden=lock.override_event_id is not None,
        )
        for lock, device, owner, removed_by in rows
    ]


# --- the presence board ----------------------------------------------------------------

SOURCE_WORDS = {
    PresenceSource.UNIFI: "door badge",
    PresenceSource.MANUAL: "checked in",
    PresenceSource.CONFIRMED: "check-in confirmed",
    PresenceSource.OVERRIDE: "safety override",
    PresenceSource.TERMINAL: "wall terminal",
}


@dataclass(frozen=True)
class PresentPerson:
    user_id: UUID
    name: str
    source: PresenceSource
    seen_at: datetime
    counts: bool
    """Their presence counts for hazardous work here (the zone's presence sources)."""

    @property
    def source_words(self) -> str:
        return SOURCE_WORDS.get(self.source, self.source.value)


@dataclass
class ZonePresenceRow:
    id: UUID
    name: str
    hazard_level: HazardLevel
    counting_sources: list[str]
    people: list[PresentPerson] = field(default_factory=list)
    viewer_here: bool = False


def presence_board(
    session: Session, now: datetime, ttl: timedelta, viewer_id: UUID
) -> list[ZonePresenceRow]:
    """Who is in each zone now (newest observation present, within ``ttl``): how they were
    seen, how long ago, and whether that counts there. One read of the observations."""
    zones = list(session.scalars(select(Zone).order_by(Zone.name)))
    observations: dict[UUID, list[PresenceObservation]] = defaultdict(list)
    for seen_row in session.scalars(
        select(ZonePresence).where(ZonePresence.observed_at >= now - ttl)
    ):
        observations[seen_row.zone_id].append(
            PresenceObservation(
                seen_row.user_id,
                seen_row.zone_id,
                seen_row.source,
                seen_row.status,
                seen_row.observed_at,
            )
        )
    names: dict[UUID, str] = {
        user_id: name for user_id, name in session.execute(select(User.id, User.display_name))
    }
    board = []
    for zone in zones:
        sources = presence_sources(zone.hazard_level, zone.presence_sources)
        row = ZonePresenceRow(
            zone.id,
            zone.name,
            zone.hazard_level,
            sorted(SOURCE_WORDS.get(s, s.value) for s in sources),
        )
        seen = observations.get(zone.id, [])
        for user_id in sorted({o.user_id for o in seen}, key=lambda u: names.get(u, "")):
            if not is_present(seen, user_id, zone.id, now, ttl):
                continue
            newest = max(
                (o for o in seen if o.user_id == user_id and o.status is PresenceStatus.PRESENT),
                key=lambda o: o.observed_at,
            )
            row.people.append(
                PresentPerson(
                    user_id,
                    names.get(user_id, "?"),
                    newest.source,
                    newest.observed_at,
                    counts_as_present(seen, user_id, zone.id, now, ttl, sources),
                )
            )
            row.viewer_here = row.viewer_here or user_id == viewer_id
        board.append(row)
    return board


# --- the audit log ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuditLine:
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    subject: str
    details: list[tuple[str, str]]


AUDIT_PAGE = 50
_QUIET_DETAILS = frozenset({"source"})


def audit_page(
    session: Session, action: str | None, before_seq: int | None
) -> tuple[list[AuditLine], int | None]:
    """Up to ``AUDIT_PAGE`` entries, newest first (``action``: a name or a ``prefix.*``),
    and the ``seq`` to ask for the next, older page (``None`` at the start of the log)."""
    rows = audit.search(
        session, audit.AuditFilter(action=action), before_seq=before_seq, limit=AUDIT_PAGE + 1
    )
    lines = [
        AuditLine(
            seq=r.entry.seq,
            occurred_at=r.entry.occurred_at,
            actor=r.actor_username or "the server",
            action=r.entry.action,
            subject=f"{r.entry.subject_type or ''} {r.entry.subject_id or ''}".strip(),
            details=_detail_words(r.entry.details),
        )
        for r in rows[:AUDIT_PAGE]
    ]
    older = lines[-1].seq if len(rows) > AUDIT_PAGE else None
    return lines, older


def _detail_words(details: Mapping[str, Any], limit: int = 8) -> list[tuple[str, str]]:
    from kittylab.web.lab_change import text

    shown = [(k, text(v)) for k, v in details.items() if k not in _QUIET_DETAILS]
    return [(k, v if len(v) <= 160 else v[:157] + "…") for k, v in shown[:limit]]


@dataclass(frozen=True)
class ChainStatus:
    intact: bool
    entries: int
    head: str
    head_seq: int
    first_break: int | None
    problems: list[str]


def chain_status(session: Session) -> ChainStatus:
    """The whole chain walked (``records.audit.verify_chain``): intact, or broken at the
    first entry that does not verify."""
    report = audit.verify_chain(session, {})
    return ChainStatus(
        intact=report.intact,
        entries=report.entries,
        head=report.head,
        head_seq=report.head_seq,
        first_break=min((b.seq for b in report.breaks), default=None),
        problems=[str(b) for b in report.breaks[:10]],
    )


# --- confirmations ---------------------------------------------------------------------


@dataclass(frozen=True)
class WaitingKey:
    key: UserKey
    owner: str
    kind: str
    fingerprint: str | None
    own: bool
    why_not: str | None
    """Why the viewer may not confirm it (``domain.duties``); ``None``: they may."""
    may_revoke: bool
    """Its owner withdraws it, an admin revokes it (``POST /api/keys/{id}/revoke``)."""


def waiting_keys(session: Session, viewer: Principal) -> list[WaitingKey]:
    """Approval keys waiting for a second person with the safety role, oldest first."""
    rows = session.execute(
        select(UserKey, User.display_name)
        .join(User, User.id == UserKey.user_id)
        .where(UserKey.awaiting_confirmation.is_(True), UserKey.revoked_at.is_(None))
        .order_by(UserKey.created_at)
    ).all()
    found = []
    for key, owner in rows:
        passkey = session.get(Passkey, key.passkey_id) if key.passkey_id else None
        parsed = keys.describe(key) if passkey is None else None
        own = key.user_id == viewer.user_id
        found.append(
            WaitingKey(
                key=key,
                owner=owner,
                kind="passkey" if passkey else (parsed.kind.label if parsed else "?"),
                fingerprint=passkey_approvals.fingerprint(passkey)
                if passkey
                else (parsed.fingerprint if parsed else None),
                own=own,
                why_not=duties.key_confirm_refusal(viewer.user_id, viewer.roles, key.user_id),
                may_revoke=own or Role.ADMIN in viewer.roles,
            )
        )
    return found


@dataclass(frozen=True)
class GrantRow:
    grant: RoleGrant
    grantee: str
    grantee_username: str
    requested_by: str
    why_not: str | None
    """Why the viewer may not confirm it; ``None``: they may."""
    may_refuse: bool
    own_request: bool


def pending_grants(session: Session, viewer: Principal) -> list[GrantRow]:
    """Role grants waiting for a second person, oldest first."""
    asker = User.__table__.alias("asker")
    rows = session.execute(
        select(RoleGrant, User.display_name, User.username, asker.c.display_name)
        .join(User, User.id == RoleGrant.user_id)
        .join(asker, asker.c.id == RoleGrant.requested_by)
        .where(RoleGrant.status == GrantStatus.PENDING.value)
        .order_by(RoleGrant.created_at, RoleGrant.id)
    ).all()
    return [
        GrantRow(
            grant=grant,
            grantee=grantee,
            grantee_username=username,
            requested_by=requested_by,
            why_not=duties.grant_confirm_refusal(
                viewer.user_id, viewer.roles, grant.requested_by, grant.user_id
            ),
            may_refuse=duties.grant_refuse_refusal(viewer.user_id, viewer.roles, grant.requested_by)
            is None,
            own_request=grant.requested_by == viewer.user_id,
        )
        for grant, grantee, username, requested_by in rows
    ]


# --- the desk's tabs -------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """What waits on each tab of the desk, for its badges."""

    approvals: int
    confirmations: int | None
    """``None`` for a viewer who does not see the confirmations (not safety or admin)."""
    locks: int


def waiting(session: Session, viewer: Principal) -> Waiting:
    pending = (
        select(func.count())
        .select_from(SafetyEvent)
        .where(SafetyEvent.status == SafetyStatus.PENDING)
    )
    if not viewer.reads_all_records:
        pending = pending.where(SafetyEvent.initiated_by == viewer.user_id)
    confirmations = None
    if viewer.reads_all_records:
        keys_waiting = session.scalar(
            select(func.count())
            .select_from(UserKey)
            .where(UserKey.awaiting_confirmation.is_(True), UserKey.revoked_at.is_(None))
        )
        grants = session.scalar(
            select(func.count())
            .select_from(RoleGrant)
            .where(RoleGrant.status == GrantStatus.PENDING.value)
        )
        confirmations = (keys_waiting or 0) + (grants or 0)
    locks = session.scalar(
        select(func.count()).select_from(DeviceLock).where(DeviceLock.removed_at.is_(None))
    )
    return Waiting(session.scalar(pending) or 0, confirmations, locks or 0)
