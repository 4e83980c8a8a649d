"""Users and API tokens. Tokens are shown once; only their SHA-256 is stored (they carry
256 bits of randomness, so a fast hash is enough and lookups stay O(1)). A token may have
an expiry (``expires_at``, fixed when it is issued); past it the token is refused with
``TokenExpired``.

Who may act is safety-relevant, so every change here leaves an audit entry (``user.added``,
``user.changed``, ``token.issued``, ``token.revoked``) in the same transaction; a token
itself never reaches the log. ``actor_id`` is the person who did it, None for a local
operator at the command line (or a test fixture); ``now`` defaults to the wall clock for
callers without one."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import ApiToken, User
from kittylab.domain.clock import utcnow
from kittylab.domain.errors import AuthenticationRequired, Conflict, NotFound
from kittylab.domain.identity import (
    TokenExpired,
    validate_display_name,
    validate_optional_email,
    validate_roles,
    validate_token_lifetime,
    validate_username,
)
from kittylab.domain.machine_scopes import parse_scopes
from kittylab.domain.principal import Principal
from kittylab.records import audit

TOKEN_PREFIX = "kl_"  # noqa: S105 - a public prefix that makes leaked tokens greppable


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: UUID
    user_id: UUID
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()


def issue_token(
    session: Session,
    user: User,
    label: str = "cli",
    *,
    lifetime: timedelta | None = None,
    actor_id: UUID | None = None,
    now: datetime | None = None,
    scopes: Sequence[str] = (),
    parent_id: UUID | None = None,
) -> IssuedToken:
    """A new token for an active ``user``, expiring ``lifetime`` after ``now`` (None:
    never). A lifetime under a minute or over ten years is ``ValidationFailed`` on
    ``expiresInSeconds``. With ``scopes`` it is a machine token (``domain.machine_scopes``;
    an unknown scope is ``ValidationFailed`` on ``scopes``). ``parent_id`` is the token it
    was minted with over the API: revoking that one revokes this one too.

    Who may mint for whom is the caller's rule (``domain.duties.token_mint_refusal`` over
    the API: the owner only); here every issue is audited, the host CLI's included."""
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="username")
    now = now or utcnow()
    expires_at = None
    if lifetime is not None:
        expires_at = now + validate_token_lifetime(lifetime, "expiresInSeconds")
    machine = [s.value for s in parse_scopes(scopes)]
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        token_hash=hash_token(token),
        label=label[:100],
        expires_at=expires_at,
        scopes=machine,
        parent_id=parent_id,
    )
    session.add(row)
    session.flush()
    # The subject is the token's id; its owner goes in the details (under keys that the
    # sanitizer does not take for secrets: anything named "token…" would be redacted).
    audit.append(
        session,
        action="token.issued",
        actor_id=actor_id,
        now=now,
        subject_type="api_token",
        subject_id=row.id,
        details={
            "user_id": user.id,
            "username": user.username,
            "label": row.label,
            **({"scopes": machine} if machine else {}),
            **({"minted_with": parent_id} if parent_id else {}),
        },
    )
    return IssuedToken(token, row.id, user.id, expires_at, tuple(machine))


def find_user_by_username(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("user", username)
    return user


def authenticate(
    session: Session, token: str, now: datetime, touch_after: timedelta = timedelta(0)
) -> Principal:
    """Resolve a bearer token to its active user, or raise AuthenticationRequired
    (``TokenExpired`` for a token that is neither revoked nor its user's inactive, but past
    its expiry at ``now``). ``last_used_at`` is refreshed only when older than
    ``touch_after``."""
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
    if api_token.expires_at is not None and now >= api_token.expires_at:
        raise TokenExpired(api_token.expires_at)
    if api_token.last_used_at is None or now - api_token.last_used_at >= touch_after:
        _touch(session, api_token.id, now)
    return Principal(
        user.id,
        user.username,
        frozenset(user.roles),
        token_id=api_token.id,
        scopes=frozenset(api_token.scopes or ()),
    )


def _touch(session: Session, token_id: UUID, now: datetime) -> None:
    """Record the use, unless another request is doing it right now: SKIP LOCKED keeps
    concurrent requests with one token from queueing behind each other's row lock."""
    locked = session.scalar(
        select(ApiToken.id).where(ApiToken.id == token_id).with_for_update(skip_locked=True)
    )
    if locked is not None:
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


def revoke_token(
    session: Session, user_id: UUID, token_id: UUID, now: datetime, *, actor_id: UUID | None = None
) -> None:
    """Revoke a token, and every token minted with it over the API (and theirs): a stolen
    token must not leave a successor behind. Revoking it again changes (and logs)
    nothing; each token revoked is audited."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("token", token_id)
    if row.revoked_at is not None:
        return
    revoked = [row]
    frontier = [row.id]
    while frontier:
        children = list(
            session.scalars(
                select(ApiToken).where(
                    ApiToken.parent_id.in_(frontier), ApiToken.revoked_at.is_(None)
                )
            )
        )
        revoked += children
        frontier = [child.id for child in children]
    for token in revoked:
        token.revoked_at = now
    session.flush()
    for token in revoked:
        audit.append(
            session,
            action="token.revoked",
            actor_id=actor_id,
            now=now,
            subject_type="api_token",
            subject_id=token.id,
            details={
                "user_id": token.user_id,
                "label": token.label,
                **({"with_token": row.id} if token is not row else {}),
            },
        )


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    roles: list[str],
    email: str | None = None,
    tailscale_id: str | None = None,
    actor_id: UUID | None = None,
    now: datetime | None = None,
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
    audit.append(
        session,
        action="user.added",
        actor_id=actor_id,
        now=now or utcnow(),
        subject_type="user",
        subject_id=user.id,
        details={"username": user.username, "roles": [r.value for r in user.roles]},
    )
    return user


@dataclass(frozen=True)
class UserChanges:
    """Fields to change; None leaves one as it is. ``email`` applies only with
    ``set_email`` (so None can also mean "remove the email")."""

    display_name: str | None = None
    roles: list[str] | None = None
    email: str | None = None
    set_email: bool = False
    active: bool | None = None


def update_user(
    session: Session,
    user: User,
    changes: UserChanges,
    *,
    actor_id: UUID | None,
    now: datetime,
) -> User:
    """Change a person added through the API or CLI. People declared in the lab manifest
    are changed in the manifest (Conflict here), or the next ``lab apply`` would undo it.
    Logs ``user.changed`` naming the fields changed, with before and after for roles and
    the active flag (the ones that decide what a person may do); nothing when nothing
    changed."""
    if user.managed_by_manifest:
        raise Conflict(
            f"{user.username} is declared in the lab manifest; change them there and apply it",
            field="username",
        )
    details: dict[str, object] = {}
    changed: list[str] = []
    if changes.display_name is not None:
        name = validate_display_name(changes.display_name)
        if name != user.display_name:
            user.display_name = name
            changed.append("display_name")
    if changes.roles is not None:
        roles = validate_roles(changes.roles)
        if sorted(roles) != sorted(user.roles):
            details["roles"] = {
                "from": [r.value for r in user.roles],
                "to": [r.value for r in roles],
            }
            user.roles = roles
            changed.append("roles")
    if changes.set_email:
        email = validate_optional_email(changes.email)
        if email != user.email:
            user.email = email
            changed.append("email")  # which field, not the address: the log is long-lived
    if changes.active is not None and changes.active != user.active:
        details["active"] = {"from": user.active, "to": changes.active}
        user.active = changes.active
        changed.append("active")
    if changed:
        session.flush()
        audit.append(
            session,
            action="user.changed",
            actor_id=actor_id,
            now=now,
            subject_type="user",
            subject_id=user.id,
            details={"username": user.username, "changed": changed, **details},
        )
    return user
