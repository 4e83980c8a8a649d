"""Granting the safety or admin role over the API takes two people (issue 13).

An admin who adds a person or changes their roles through the API gets the unprivileged
part at once (and any removal); each privileged role asked for (``domain.duties``) becomes
a pending ``RoleGrant``, audited ``role.requested``. A second person with the admin or
safety role, neither the one who asked nor the grantee, confirms it (``role.granted``,
with the roles before and after) or refuses it (``role.refused``; the one who asked may
withdraw). The host CLI (``kittylab users add``) and a manifest applied on the host stay
the operator's path and grant at once, audited. Re-activating a person over the API is a
grant of the privileged roles they come back with, pending the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import RoleGrant, User
from kittylab.domain import duties
from kittylab.domain.duties import GrantStatus
from kittylab.domain.enums import Role
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.identity import validate_roles
from kittylab.people import identity
from kittylab.records import audit


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    roles: list[str],
    email: str | None,
    tailscale_id: str | None,
    actor_id: UUID,
    now: datetime,
) -> User:
    """A person added over the API: with the unprivileged roles at once, the privileged
    ones pending. A person cannot be added with privileged roles only (they would hold
    none meanwhile): ``ValidationFailed`` on ``roles``."""
    split = duties.split_roles((), validate_roles(roles))
    if not split.now:
        raise ValidationFailed(
            "roles",
            "safety and admin are granted only once a second person confirms; add the "
            "person with another role too (e.g. operator), or on the server with "
            "`kittylab users add`",
        )
    user = identity.create_user(
        session,
        username=username,
        display_name=display_name,
        roles=[r.value for r in split.now],
        email=email,
        tailscale_id=tailscale_id,
        actor_id=actor_id,
        now=now,
    )
    for role in split.held:
        request(session, user, role, requested_by=actor_id, now=now)
    return user


def update_user(
    session: Session,
    user: User,
    changes: identity.UserChanges,
    *,
    actor_id: UUID,
    now: datetime,
) -> User:
    """Change a person over the API: the privileged roles ``changes`` adds wait for a
    second person; everything else applies now. When only privileged roles would remain,
    the person keeps the roles they hold until the grant is confirmed.

    Re-activating a person (``active: true`` on an inactive one) is a grant of every role
    they come back with: one inactive holds none, so their safety or admin role waits for a
    second person like a new one. A person who would come back with privileged roles only
    is refused (``ValidationFailed`` on ``roles``), as when such a person is added."""
    held: tuple[Role, ...] = ()
    returning = changes.active is True and not user.active and not user.managed_by_manifest
    if changes.roles is not None or returning:
        wanted = validate_roles(changes.roles) if changes.roles is not None else list(user.roles)
        split = duties.split_roles(() if returning else user.roles, wanted)
        if returning and not split.now:
            raise ValidationFailed(
                "roles",
                f"re-activating {user.username} gives back "
                f"{', '.join(r.value for r in split.held)} only once a second person confirms; "
                "re-activate them with another role too (e.g. operator) meanwhile",
            )
        held = split.held
        now_roles = [r.value for r in split.now] if split.now else None
        changes = identity.UserChanges(
            display_name=changes.display_name,
            roles=now_roles,
            email=changes.email,
            set_email=changes.set_email,
            active=changes.active,
        )
    identity.update_user(session, user, changes, actor_id=actor_id, now=now)
    for role in held:
        request(session, user, role, requested_by=actor_id, now=now)
    return user


def request(
    session: Session, user: User, role: Role, *, requested_by: UUID, now: datetime
) -> RoleGrant:
    """The pending grant of ``role`` to ``user`` (the one already open, if any)."""
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="roles")
    open_grant = session.scalar(
        select(RoleGrant).where(
            RoleGrant.user_id == user.id,
            RoleGrant.role == role,
            RoleGrant.status == GrantStatus.PENDING.value,
        )
    )
    if open_grant is not None:
        return open_grant
    grant = RoleGrant(
        user_id=user.id,
        role=role,
        status=GrantStatus.PENDING.value,
        requested_by=requested_by,
        created_at=now,
    )
    session.add(grant)
    session.flush()
    audit.append(
        session,
        action="role.requested",
        actor_id=requested_by,
        now=now,
        subject_type="user",
        subject_id=user.id,
        details={"username": user.username, "role": role.value, "grant_id": grant.id},
    )
    return grant


def confirm(
    session: Session, grant_id: UUID, *, by: UUID, roles: frozenset[Role], now: datetime
) -> RoleGrant:
    """A second person confirms: the role is added now. ``PermissionDenied`` for the one
    who asked, the grantee, or anyone without the admin or safety role; ``Conflict`` for
    a grant already decided or an inactive grantee."""
    grant = _pending(session, grant_id)
    refusal = duties.grant_confirm_refusal(by, roles, grant.requested_by, grant.user_id)
    if refusal is not None:
        raise PermissionDenied(refusal)
    user = session.get(User, grant.user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise NotFound("user", grant.user_id)
    if not user.active:
        raise Conflict(f"user {user.username} is inactive")
    before = [r.value for r in user.roles]
    if grant.role not in user.roles:
        user.roles = validate_roles([*user.roles, grant.role])
    _decide(grant, GrantStatus.GRANTED, by, now)
    session.flush()
    audit.append(
        session,
        action="role.granted",
        actor_id=by,
        now=now,
        subject_type="user",
        subject_id=user.id,
        details={
            "username": user.username,
            "role": grant.role.value,
            "grant_id": grant.id,
            "requested_by": grant.requested_by,
            "roles": {"from": before, "to": [r.value for r in user.roles]},
        },
    )
    return grant


def refuse(
    session: Session, grant_id: UUID, *, by: UUID, roles: frozenset[Role], now: datetime
) -> RoleGrant:
    """Refuse (or, for the one who asked, withdraw) a pending grant."""
    grant = _pending(session, grant_id)
    refusal = duties.grant_refuse_refusal(by, roles, grant.requested_by)
    if refusal is not None:
        raise PermissionDenied(refusal)
    _decide(grant, GrantStatus.REFUSED, by, now)
    session.flush()
    audit.append(
        session,
        action="role.refused",
        actor_id=by,
        now=now,
        subject_type="user",
        subject_id=grant.user_id,
        details={"role": grant.role.value, "grant_id": grant.id},
    )
    return grant


def pending_roles(session: Session, user_ids: Iterable[UUID]) -> dict[UUID, list[Role]]:
    """The roles each of ``user_ids`` waits for, in the order they were asked."""
    ids = list(user_ids)
    found: dict[UUID, list[Role]] = {user_id: [] for user_id in ids}
    if not ids:
        return found
    rows = session.execute(
        select(RoleGrant.user_id, RoleGrant.role)
        .where(RoleGrant.user_id.in_(ids), RoleGrant.status == GrantStatus.PENDING.value)
        .order_by(RoleGrant.id)
    )
    for user_id, role in rows:
        found[user_id].append(role)
    return found


def _pending(session: Session, grant_id: UUID) -> RoleGrant:
    grant = session.get(RoleGrant, grant_id, with_for_update=True, populate_existing=True)
    if grant is None:
        raise NotFound("role grant", grant_id)
    if grant.status != GrantStatus.PENDING.value:
        raise Conflict(f"this role grant is already {grant.status}")
    return grant


def _decide(grant: RoleGrant, status: GrantStatus, by: UUID, now: datetime) -> None:
    grant.status = status.value
    grant.decided_by = by
    grant.decided_at = now
