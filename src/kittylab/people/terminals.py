"""Wall terminals (issue 18): a tablet on a zone's wall, bound to that zone by an admin,
where people check in and out with their own security key and act as themselves.

The life of a terminal (``TerminalStatus``): a tablet that opens ``/terminal`` without a
terminal cookie becomes ``waiting`` and shows a one-time pairing code; an admin types the
code into the console and picks the zone (``pair``: ``paired``); an admin revokes it
(``revoke``: ``revoked``, and whoever was tapped in on it is signed out). The tablet's
cookie and the code are random secrets stored as their SHA-256 only.

A terminal alone has no powers: it shows its own zone (devices, camera, alerts, pending
approvals) and nothing else. A person taps their security key (a passkey enrolled here,
verified by ``people.passkeys``) to check in (``tap_in``: a ``terminal`` presence in the
terminal's zone, which zone policies may trust) and gets a short session of their own on
the tablet (``web_sessions`` with the terminal's id, ended after
``console.terminal_tap_seconds`` unused): what they do there, they do with their roles,
through the same gate as everywhere. ``check_out`` records them leaving and ends it.

Audited in the same transaction: ``terminal.paired``, ``terminal.revoked``; the tap-in's
presence is ``presence.recorded`` naming the terminal, its session ``session.started``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Passkey, Terminal, User, WebSession, Zone
from kittylab.domain.enums import PresenceStatus, Role, TerminalStatus
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.domain.sanitize import sanitize_text
from kittylab.people import presence, web_sessions
from kittylab.records import audit

TOKEN_PREFIX = "klt_"  # noqa: S105 (a prefix, not a secret)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0/O or 1/I: the code is read off a screen and typed by someone else."""
CODE_LENGTH = 8  # 40 bits, valid minutes, for one waiting tablet
WAITING_KEPT = timedelta(days=1)
"""A waiting tablet whose code expired this long ago is forgotten (its cookie with it)."""
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
PAIRED = "terminal.paired"
REVOKED = "terminal.revoked"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_code(code: str) -> str:
    """The code as stored: upper case, without the spaces and dashes people type."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def shown_code(code: str) -> str:
    """``ABCD-EFGH``: two groups, easy to read aloud across a room."""
    return f"{code[:4]}-{code[4:]}"


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True)
class Waiting:
    """A tablet waiting to be paired: its cookie's secret (only when new) and the code it
    shows until ``code_expires_at``."""

    terminal_id: UUID
    token: str | None
    code: str
    code_expires_at: datetime


def start_waiting(
    session: Session, *, now: datetime, code_lifetime: timedelta, most: int, address: str | None
) -> Waiting:
    """A new waiting tablet with a fresh code. ``Conflict`` when ``most`` tablets already
    show a valid code (anyone on the lab's network can open the page; this keeps them from
    filling the table)."""
    session.execute(
        delete(Terminal).where(
            Terminal.status == TerminalStatus.WAITING,
            Terminal.code_expires_at < now - WAITING_KEPT,
        )
    )
    waiting = session.scalar(
        select(func.count())
        .select_from(Terminal)
        .where(Terminal.status == TerminalStatus.WAITING, Terminal.code_expires_at > now)
    )
    if (waiting or 0) >= most:
        raise Conflict(
            f"{most} tablets are already waiting to be paired; pair or let their codes "
            "expire first (console.terminals_waiting_max)",
            field="terminal",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    code = _new_code()
    row = Terminal(
        status=TerminalStatus.WAITING,
        token_hash=_hash(token),
        code_hash=_hash(code),
        code_expires_at=now + code_lifetime,
        address=(address or None) and address[:64],
    )
    session.add(row)
    session.flush()
    return Waiting(row.id, token, code, now + code_lifetime)


def renew_code(
    session: Session, terminal: Terminal, *, now: datetime, lifetime: timedelta
) -> Waiting:
    """A waiting tablet's next code, once the one it showed has expired (a page reload
    does not change a valid one: the code someone is typing stays right)."""
    if terminal.status is not TerminalStatus.WAITING:
        raise Conflict("this terminal is not waiting to be paired", field="terminal")
    code = _new_code()
    terminal.code_hash = _hash(code)
    terminal.code_expires_at = now + lifetime
    return Waiting(terminal.id, None, code, terminal.code_expires_at)


def resolve(session: Session, token: str, now: datetime) -> Terminal | None:
    """The terminal a tablet's cookie names (any status), or None for an unknown or
    malformed one. ``last_seen_at`` moves on at most once a minute."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    terminal = session.scalar(select(Terminal).where(Terminal.token_hash == _hash(token)))
    if terminal is None:
        return None
    if terminal.last_seen_at is None or now - terminal.last_seen_at >= LAST_SEEN_RESOLUTION:
        session.execute(update(Terminal).where(Terminal.id == terminal.id).values(last_seen_at=now))
    return terminal


def _admin(actor: Principal) -> None:
    if not actor.has_any(Role.ADMIN):
        raise PermissionDenied("only the admin role pairs and revokes wall terminals")


def pair(
    session: Session,
    *,
    code: str,
    zone_id: UUID,
    name: str,
    actor: Principal,
    now: datetime,
) -> Terminal:
    """Bind the waiting tablet that shows ``code`` to ``zone_id``, named ``name`` (the
    zone's name and "terminal" when blank). The code is spent. Audited."""
    _admin(actor)
    wanted = normalize_code(code)
    if len(wanted) != CODE_LENGTH:
        raise ValidationFailed("code", f"a pairing code has {CODE_LENGTH} letters and digits")
    terminal = session.scalar(
        select(Terminal).where(Terminal.code_hash == _hash(wanted)).with_for_update()
    )
    if (
        terminal is None
        or terminal.status is not TerminalStatus.WAITING
        or terminal.code_expires_at is None
        or now >= terminal.code_expires_at
    ):
        raise ValidationFailed(
            "code",
            "no tablet shows this code (or it has expired): check the code on the tablet's "
            "screen; it shows a new one when the old one expires",
        )
    zone = session.get(Zone, zone_id)
    if zone is None:
        raise NotFound("zone", zone_id)
    terminal.name = sanitize_text(name).strip()[:100] or f"{zone.name} terminal"
    terminal.zone_id = zone.id
    terminal.status = TerminalStatus.PAIRED
    terminal.paired_by = actor.user_id
    terminal.paired_at = now
    terminal.code_hash = None
    terminal.code_expires_at = None
    session.flush()
    audit.append(
        session,
        action=PAIRED,
        actor_id=actor.user_id,
        now=now,
        subject_type="terminal",
        subject_id=terminal.id,
        details={
            "zone_id": zone.id,
            "zone": zone.name,
            "name": terminal.name,
            "address": terminal.address,
        },
    )
    return terminal


def revoke(session: Session, terminal_id: UUID, *, actor: Principal, now: datetime) -> Terminal:
    """Unpair a terminal for good: its tablet goes back to nothing and whoever is tapped in
    on it is signed out. Again: nothing changes. Audited."""
    _admin(actor)
    terminal = session.get(Terminal, terminal_id, with_for_update=True)
    if terminal is None:
        raise NotFound("terminal", terminal_id)
    if terminal.status is TerminalStatus.REVOKED:
        return terminal
    terminal.status = TerminalStatus.REVOKED
    terminal.revoked_by = actor.user_id
    terminal.revoked_at = now
    terminal.code_hash = None
    signed_out = _end_taps(session, terminal.id, now)
    audit.append(
        session,
        action=REVOKED,
        actor_id=actor.user_id,
        now=now,
        subject_type="terminal",
        subject_id=terminal.id,
        details={"zone_id": terminal.zone_id, "name": terminal.name, "signed_out": signed_out},
    )
    return terminal


def _end_taps(session: Session, terminal_id: UUID, now: datetime) -> int:
    """Sign out every session tapped in on the terminal; how many there were."""
    ended = session.execute(
        update(WebSession)
        .where(WebSession.terminal_id == terminal_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(WebSession.id)
    ).all()
    return len(ended)


@dataclass(frozen=True)
class TerminalRow:
    terminal: Terminal
    zone_name: str | None
    paired_by: str | None


def list_terminals(session: Session) -> Sequence[TerminalRow]:
    """Every paired or revoked terminal (waiting tablets are not listed: their codes are
    secrets of the tablets), newest first."""
    rows = session.execute(
        select(Terminal, Zone.name, User.display_name)
        .outerjoin(Zone, Zone.id == Terminal.zone_id)
        .outerjoin(User, User.id == Terminal.paired_by)
        .where(Terminal.status != TerminalStatus.WAITING)
        .order_by(Terminal.status, Terminal.paired_at.desc())
    ).all()
    return [TerminalRow(t, zone, by) for t, zone, by in rows]


@dataclass(frozen=True)
class TapIn:
    session: web_sessions.IssuedSession
    user: User


def _paired(terminal: Terminal) -> UUID:
    if terminal.status is not TerminalStatus.PAIRED or terminal.zone_id is None:
        raise PermissionDenied("this tablet is not a paired wall terminal")
    return terminal.zone_id


def tap_in(
    session: Session,
    terminal: Terminal,
    passkey: Passkey,
    *,
    limits: web_sessions.SessionLimits,
    now: datetime,
    user_agent: str = "",
    address: str | None = None,
) -> TapIn:
    """``passkey`` (verified by ``passkeys.authenticate``) was tapped on ``terminal``: its
    person is checked in to the terminal's zone (a ``terminal`` presence) and gets the
    tablet's session, signing out whoever had it (one person at a time on a wall)."""
    zone_id = _paired(terminal)
    user = session.get(User, passkey.user_id)
    if user is None or not user.active:
        raise PermissionDenied("this person is not active here")
    presence.record_terminal(
        session,
        zone_id=zone_id,
        user_id=user.id,
        terminal_id=terminal.id,
        status=PresenceStatus.PRESENT,
        now=now,
    )
    _end_taps(session, terminal.id, now)
    issued = web_sessions.start(
        session,
        user.id,
        passkey_id=passkey.id,
        limits=limits,
        now=now,
        user_agent=user_agent,
        address=address,
        terminal_id=terminal.id,
    )
    return TapIn(issued, user)


def check_out(
    session: Session, terminal: Terminal, active: web_sessions.ActiveSession, now: datetime
) -> None:
    """The person tapped in on ``terminal`` leaves its zone: a ``terminal`` check-out, and
    the tablet's session ends."""
    zone_id = _paired(terminal)
    if active.terminal_id != terminal.id:
        raise PermissionDenied("check out on the terminal you tapped in on")
    presence.record_terminal(
        session,
        zone_id=zone_id,
        user_id=active.principal.user_id,
        terminal_id=terminal.id,
        status=PresenceStatus.VACATED,
        now=now,
    )
    tap_out(session, active, now)


def tap_out(session: Session, active: web_sessions.ActiveSession, now: datetime) -> None:
    """End a tap-in's session (the person stays checked in)."""
    web_sessions.revoke(
        session,
        active.principal.user_id,
        active.session_id,
        now,
        actor_id=active.principal.user_id,
    )
