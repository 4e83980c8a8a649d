"""``/api/me`` and ``/api/users``: people and their API tokens (their approver keys:
``keys.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy import select

from kittylab.adapters.db.tables import ApiToken, User
from kittylab.api.auth import AdminCaller, Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import (
    InviteSentOut,
    TokenCreate,
    TokenInfo,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from kittylab.bootstrap import Container
from kittylab.domain import duties
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.people import identity, invites, role_grants

router = APIRouter(prefix="/api", tags=["users"])


def _seen_by(caller: Principal) -> Callable[[User], UserOut]:
    """A person as ``caller`` may see them: the email address is the person's own, and the
    safety role's and admin's (who reach people about incidents and accounts); everyone
    else sees the name and roles only."""
    sees_emails = caller.has_any(Role.SAFETY, Role.ADMIN)

    def view(user: User) -> UserOut:
        out = UserOut.model_validate(user)
        if sees_emails or user.id == caller.user_id:
            return out
        return out.model_copy(update={"email": None})

    return view


@router.get("/me", response_model=UserOut)
def me(caller: Caller, uow: UnitOfWork) -> UserOut:
    return _out(uow, _get(uow, caller.user_id), caller)


@router.get("/users", response_model=Page[UserOut])
def list_users(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    role: Role | None = None,
    active: bool | None = None,
) -> Page[UserOut]:
    stmt = where_equal(select(User), (User.active, active))
    if role is not None:
        stmt = stmt.where(User.roles.contains([role]))
    page = paginate(uow, stmt, User.id, cursor, limit, _seen_by(caller))
    pending = role_grants.pending_roles(uow, [u.id for u in page.items])
    page.items = [u.model_copy(update={"pending_roles": pending[u.id]}) for u in page.items]
    return page


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: UUID, caller: Caller, uow: UnitOfWork) -> UserOut:
    """A person: name, roles and roles awaiting a second person for everyone; the email
    address for themselves, safety and admin."""
    return _out(uow, _get(uow, user_id), caller)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> UserOut:
    """Add a person. The safety and admin roles wait for a second person (``pendingRoles``;
    confirmed at ``/api/role-grants``); a person needs another role meanwhile."""
    user = role_grants.create_user(
        uow,
        username=body.username,
        display_name=body.display_name,
        roles=[r.value for r in body.roles],
        email=body.email,
        tailscale_id=body.tailscale_id,
        actor_id=caller.user_id,
        now=c.clock(),
    )
    return _out(uow, user, caller)


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(
    user_id: UUID,
    body: UserUpdate,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> UserOut:
    """Change a person added through the API or CLI. People declared in the lab manifest
    are changed in the manifest (409 here), or the next ``lab apply`` would undo it.
    Adding the safety or admin role waits for a second person (``pendingRoles``);
    removing a role takes effect at once."""
    changes = identity.UserChanges(
        display_name=body.display_name,
        roles=[r.value for r in body.roles] if body.roles is not None else None,
        email=body.email,
        set_email="email" in body.model_fields_set,
        active=body.active,
    )
    user = role_grants.update_user(
        uow, _get(uow, user_id), changes, actor_id=caller.user_id, now=c.clock()
    )
    return _out(uow, user, caller)


def _own_or_admin(caller: Principal, user_id: UUID) -> None:
    if caller.user_id != user_id and not caller.has_any(Role.ADMIN):
        raise PermissionDenied("only an admin can manage someone else's tokens")


@router.get("/users/{user_id}/tokens", response_model=Page[TokenInfo])
def list_tokens(
    user_id: UUID, caller: Caller, uow: UnitOfWork, limit: Limit = 50, cursor: CursorParam = None
) -> Page[TokenInfo]:
    """A user's tokens (never the secrets themselves): admins for anyone, users for
    themselves."""
    _own_or_admin(caller, user_id)
    _get(uow, user_id)
    stmt = select(ApiToken).where(ApiToken.user_id == user_id)
    return paginate(uow, stmt, ApiToken.id, cursor, limit, TokenInfo.model_validate)


@router.delete("/users/{user_id}/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(
    user_id: UUID,
    token_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    """Revoke a token at once; requests carrying it get 401 from then on."""
    _own_or_admin(caller, user_id)
    identity.revoke_token(uow, user_id, token_id, c.clock(), actor_id=caller.user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/tokens", response_model=TokenOut, status_code=201)
def create_token(
    user_id: UUID,
    body: TokenCreate,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> TokenOut:
    """A new API token, for yourself only: no one mints a token for someone else, an admin
    included (a person's first token comes from the server host, `kittylab users token`).
    A token minted here is revoked with the token that minted it, so a stolen token cannot
    leave a successor behind. It lives ``expiresInSeconds``; left out, the lab's default
    lifetime; null, for ever. With ``scopes`` it is a machine token for a detector or an
    integration, reaching only those scopes' endpoints."""
    refusal = duties.token_mint_refusal(caller.user_id, user_id)
    if refusal is not None:
        raise PermissionDenied(refusal)
    seconds = (
        body.expires_in_seconds
        if "expires_in_seconds" in body.model_fields_set
        else c.settings.tokens.default_lifetime_seconds
    )
    issued = identity.issue_token(
        uow,
        _get(uow, user_id),
        body.label,
        lifetime=timedelta(seconds=seconds) if seconds is not None else None,
        actor_id=caller.user_id,
        now=c.clock(),
        scopes=[s.value for s in body.scopes],
        parent_id=caller.token_id,
    )
    return TokenOut(
        token=issued.token,
        token_id=issued.token_id,
        user_id=issued.user_id,
        expires_at=issued.expires_at,
        scopes=list(issued.scopes),
    )


@router.post(
    "/users/{user_id}/invite", response_model=InviteSentOut, status_code=status.HTTP_202_ACCEPTED
)
def send_invite(
    user_id: UUID,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> InviteSentOut:
    """Email a person a one-time link to enrol a passkey for the console, to their own
    address: valid ``console.invite_minutes``, used once, audited (``invite.issued``,
    ``invite.sent``). The answer says where it went (masked), never the link, so no admin
    can enrol as someone else. A person with no email address is a 409 on ``email``
    (``kittylab users invite NAME`` on the server host is then the way); a lab with no
    email target configured, a 422 on ``channel``."""
    sent = invites.send_invite(
        uow, c.jobs, _get(uow, user_id), settings=c.settings, now=c.clock(), actor_id=caller.user_id
    )
    return InviteSentOut(
        user_id=sent.user_id,
        notification_id=sent.notification_id,
        sent_to=sent.sent_to,
        expires_at=sent.expires_at,
    )


def _get(uow: UnitOfWork, user_id: UUID) -> User:
    return get_or_404(uow, User, user_id, "user")


def _out(uow: UnitOfWork, user: User, caller: Principal) -> UserOut:
    """One person as ``caller`` may see them, with the roles they wait for."""
    pending = role_grants.pending_roles(uow, [user.id])[user.id]
    return _seen_by(caller)(user).model_copy(update={"pending_roles": pending})
