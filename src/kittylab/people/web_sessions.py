"""Signed-in browsers (issue 17): a console session is a second way to the same
``Principal`` an API token gives, with the same roles; API tokens stay for programs.

The cookie holds a random secret; only its SHA-256 is stored. Each session has a CSRF
token of its own that every write must echo in a header (``api.web_auth``), an idle
timeout (``console.session_idle_seconds`` without a request) and an absolute end
(``console.session_absolute_seconds`` after sign-in). A person lists their sessions and
revokes any of them; starting and revoking are audited (``session.started``,
``session.revoked``)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Terminal, User, WebSession
from kittylab.domain.errors import AuthenticationRequired, NotFound
from kittylab.domain.principal import Principal
from kittylab.records import audit

SESSION_PREFIX = "kls_"


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta
    absolute: timedelta
    terminal_idle: timedelta = timedelta(seconds=90)
    """The idle timeout of a tap-in on a wall terminal (issue 18): a tablet on a wall is
    left behind, so its person is tapped out within a minute or two."""

    def idle_of(self, terminal_id: UUID | None) -> timedelta:
        return self.idle if terminal_id is None else min(self.idle, self.terminal_idle)


@dataclass(frozen=True)
class IssuedSession:
    token: str
    """The cookie's value; shown to the browser once, stored hashed."""
    session_id: UUID
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    session_id: UUID
    csrf_token: str
    display_name: str
    terminal_id: UUID | None = None
    """The wall terminal this person tapped in on (issue 18), None for a console sign-in."""
    terminal_zone_id: UUID | None = None
    """That terminal's zone (its tap-in acts there only: ``domain.tap_in``)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    session: Session,
    user_id: UUID,
    *,
    passkey_id: UUID | None,
    limits: SessionLimits,
    now: datetime,
    user_agent: str = "",
    address: str | None = None,
    terminal_id: UUID | None = None,
) -> IssuedSession:
    """A new session for ``user_id``, signed in with ``passkey_id`` (on the wall terminal
    ``terminal_id``, if any: a tap-in, which ends after ``limits.terminal_idle`` unused).
    Audited."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    row = WebSession(
        user_id=user_id,
        token_hash=_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        passkey_id=passkey_id,
        user_agent=user_agent[:200],
        address=(address or None) and address[:64],
        last_seen_at=now,
        expires_at=now + limits.absolute,
        terminal_id=terminal_id,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        action="session.started",
        actor_id=user_id,
        now=now,
        subject_type="web_session",
        subject_id=row.id,
        details={"passkey_id": passkey_id, "address": row.address}
        | ({"terminal_id": terminal_id} if terminal_id is not None else {}),
    )
    return IssuedSession(token, row.id, row.csrf_token, row.expires_at)


def resolve(
    session: Session,
    token: str,
    now: datetime,
    limits: SessionLimits,
    touch_after: timedelta = timedelta(0),
    *,
    touch: bool = True,
) -> ActiveSession:
    """The live session the cookie names, or ``AuthenticationRequired`` (unknown, revoked,
    idle too long, past its end, or its person inactive). ``last_seen_at`` is moved on
    only when older than ``touch_after``: reads must not all become writes; never with
    ``touch=False`` (a wall terminal's page asking who is tapped in is not their use)."""
    if not token.startswith(SESSION_PREFIX):
        raise AuthenticationRequired("malformed session")
    row = session.execute(
        select(WebSession, User, Terminal.zone_id)
        .join(User, User.id == WebSession.user_id)
        .outerjoin(Terminal, Terminal.id == WebSession.terminal_id)
        .where(WebSession.token_hash == _hash(token))
    ).first()
    if row is None:
        raise AuthenticationRequired("unknown session: sign in again")
    web, user, terminal_zone_id = row
    if web.revoked_at is not None or not user.active:
        raise AuthenticationRequired("this session was signed out: sign in again")
    if now >= web.expires_at or now - web.last_seen_at >= limits.idle_of(web.terminal_id):
        raise AuthenticationRequired("this session has expired: sign in again")
    if web.terminal_id is not None:
        touch_after = timedelta(0)  # a tap-in's idle timeout is seconds, not hours
    if touch and now - web.last_seen_at >= touch_after:
        session.execute(update(WebSession).where(WebSession.id == web.id).values(last_seen_at=now))
    principal = Principal(user.id, user.username, frozenset(user.roles))
    return ActiveSession(
        principal, web.id, web.csrf_token, user.display_name, web.terminal_id, terminal_zone_id
    )


def list_sessions(
    session: Session, user_id: UUID, now: datetime, limits: SessionLimits
) -> Sequence[WebSession]:
    """``user_id``'s sessions that still work, newest first."""
    return session.scalars(
        select(WebSession)
        .where(
            WebSession.user_id == user_id,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > now,
            WebSession.last_seen_at > now - limits.idle,
            or_(
                WebSession.terminal_id.is_(None),
                WebSession.last_seen_at > now - min(limits.idle, limits.terminal_idle),
            ),
        )
        .order_by(WebSession.created_at.desc())
    ).all()


def revoke(
    session: Session, user_id: UUID, session_id: UUID, now: datetime, *, actor_id: UUID
) -> None:
    """Sign one of ``user_id``'s sessions out at once (again: nothing changes). Audited."""
    row = session.get(WebSession, session_id)
    if row is None or row.user_id != user_id:
        raise NotFound("session", session_id)
    if row.revoked_at is not None:
        return
    row.revoked_at = now
    audit.append(
        session,
        action="session.revoked",
        actor_id=actor_id,
        now=now,
        subject_type="web_session",
        subject_id=row.id,
        details={"user_id": user_id},
    )
