"""``/api/keys`` and ``/api/users/{id}/keys``: approver keys, the public keys people sign
safety approvals with. A person's keys are listed and added under their user, but the key
is the safety workflow's resource (revoked at ``/api/keys/{id}/revoke``), so its routes stay
together here rather than in ``users.py``."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from kittylab.adapters.db.tables import User, UserKey
from kittylab.api.auth import AdminCaller, Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404
from kittylab.api.schemas import KeyCreate, KeyOut
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.safety import keys

router = APIRouter(prefix="/api", tags=["keys"])


def key_out(row: UserKey) -> KeyOut:
    parsed = keys.describe(row)
    return KeyOut(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        kind=parsed.kind.label if parsed else None,
        fingerprint=parsed.fingerprint if parsed else None,
        public_key=row.public_key,
        hardware=parsed.kind.hardware if parsed else False,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.get("/users/{user_id}/keys", response_model=Page[KeyOut])
def list_keys(
    user_id: UUID, caller: Caller, uow: UnitOfWork, limit: Limit = 50, cursor: CursorParam = None
) -> Page[KeyOut]:
    """A person's keys, revoked ones included: for themselves, safety and admins."""
    if caller.user_id != user_id and not caller.has_any(Role.SAFETY, Role.ADMIN):
        raise PermissionDenied("only safety and admins can see someone else's keys")
    get_or_404(uow, User, user_id, "user")
    stmt = select(UserKey).where(UserKey.user_id == user_id)
    return paginate(uow, stmt, UserKey.id, cursor, limit, key_out)


@router.post("/users/{user_id}/keys", response_model=KeyOut, status_code=status.HTTP_201_CREATED)
def add_key(
    user_id: UUID,
    body: KeyCreate,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> KeyOut:
    """Register a public key a person signs approvals with: admins only. A key is what an
    approval rests on; if a bearer token alone could register one, a stolen token could
    mint approvals. (On the server, ``kittylab keys add`` does the same without a token.)
    RSA keys are refused: Ed25519 or a FIDO2 hardware key is required."""
    row = keys.add_key(
        uow,
        user_id=user_id,
        name=body.name,
        public_key=body.public_key,
        actor_id=caller.user_id,
        now=c.clock(),
    )
    return key_out(row)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut)
def revoke_key(
    key_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> KeyOut:
    """Revoke a key at once (its owner, or an admin). A revoked key stays revoked."""
    row = keys.revoke_key(
        uow,
        key_id,
        actor_id=caller.user_id,
        now=c.clock(),
        allowed_owner=None if caller.has_any(Role.ADMIN) else caller.user_id,
    )
    return key_out(row)
