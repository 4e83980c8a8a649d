"""Users and API tokens. Tokens are shown once; only their SHA-256 is stored (they carry
256 bits of randomness, so a fast hash is enough and lookups stay O(1))."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import ApiToken, User
from kittylab.domain.errors import AuthenticationRequired, Conflict, NotFound
from kittylab.domain.identity import (
    validate_display_name,
    validate_optional_email,
    validate_roles,
    validate_username,
)
from kittylab.domain.principal import Principal

TOKEN_PREFIX = "kl_"  # noqa: S105 - a public prefix that makes leaked tokens greppable


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: UUID
    user_id: UUID


def issue_token(session: Session, user: User, label: str = "cli") -> IssuedToken:
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="username")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), label=label[:100])
    session.add(row)
    session.flush()
    return IssuedToken(token, row.id, user.id)


def find_user_by_username(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("user", username)
    return user


def authenticate(
    session: Session, token: str, now: datetime, touch_after: timedelta = timedelta(0)
) -> Principal:
    """Resolve a bearer token to its active user, or raise AuthenticationRequired.
    ``last_used_at`` is refreshed only when older than ``touch_after``."""
    if not token.startswith(TOKEN_PREFIX):
        raise AuthenticationRequired("malformed token")
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token))
    ).first()
    if row is None:
        raise AuthenticationRequired("unknown token")
    api_token, user = row
    if api_token.revoked_at is not None or not user.active:
        raise AuthenticationRequired("revoked token or inactive user")
    if api_token.last_used_at is None or now - api_token.last_used_at >= touch_after:
        _touch(session, api_token.id, now)
    return Principal(user.id, user.username, frozenset(user.roles))


def _touch(session: Session, token_id: UUID, now: datetime) -> None:
    """Record the use, unless another request is doing it right now: SKIP LOCKED keeps
    concurrent requests with one token from queueing behind each other's row lock."""
    locked = session.scalar(
        select(ApiToken.id).where(ApiToken.id == token_id).with_for_update(skip_locked=True)
    )
    if locked is not None:
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


def revoke_token(session: Session, user_id: UUID, token_id: UUID, now: datetime) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("token", token_id)
    row.revoked_at = row.revoked_at or now


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    roles: list[str],
    email: str | None = None,
    tailscale_id: str | None = None,
) -> User:
    name = validate_username(username)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise Conflict(f"a user named {name} exists", field="username")
    user = User(
        username=name,
        display_name=validate_display_name(display_name),
        roles=validate_roles(roles),
        email=validate_optional_email(email),
        tailscale_id=tailscale_id,
    )
    session.add(user)
    session.flush()
    return user
