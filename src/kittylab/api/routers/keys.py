"""``/api/keys`` and ``/api/users/{id}/keys``: approver keys, the public keys people sign
safety approvals with. A person's keys are listed and enrolled under their user, but the
key is the safety workflow's resource (confirmed at ``/api/keys/{id}/confirm``, revoked at
``/api/keys/{id}/revoke``), so its routes stay together here rather than in ``users.py``.

Enrolment (issue 13): only the owner, with proof of possession (a signed challenge), and
the key signs nothing until a second person with the safety role confirms it."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from kittylab.adapters.db.tables import User, UserKey
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404
from kittylab.api.schemas import KeyChallengeOut, KeyCreate, KeyOut
from kittylab.bootstrap import Container
from kittylab.domain import duties
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.safety import keys
from kittylab.safety.enrolment import ENROLMENT_NAMESPACE

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
        awaiting_confirmation=row.awaiting_confirmation,
        confirmed_by=row.confirmed_by,
        confirmed_at=row.confirmed_at,
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


@router.post(
    "/users/{user_id}/keys/challenge",
    response_model=KeyChallengeOut,
    status_code=status.HTTP_201_CREATED,
)
def key_challenge(
    user_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> KeyChallengeOut:
    """A challenge to sign when enrolling one of your keys: random, valid five minutes,
    single use, and yours only."""
    _own(caller, user_id)
    row = keys.issue_challenge(uow, user_id, c.clock())
    return KeyChallengeOut(
        challenge_id=row.id,
        challenge=row.challenge,
        user_id=row.user_id,
        expires_at=row.expires_at,
        ssh_namespace=ENROLMENT_NAMESPACE,
    )


@router.post("/users/{user_id}/keys", response_model=KeyOut, status_code=status.HTTP_201_CREATED)
def add_key(
    user_id: UUID,
    body: KeyCreate,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> KeyOut:
    """Enrol one of your own keys (``kittylab keys enrol`` does all of it): the signature
    must be this key's over the enrolment message of a challenge from
    ``/keys/challenge`` (docs/safety-keys.md). The key is stored awaiting confirmation: it
    signs no approval until a second person with the safety role confirms it. No one
    enrols a key for someone else over the API; on the server, ``kittylab keys add`` is
    the operator's path. RSA keys are refused: Ed25519 or a FIDO2 hardware key is
    required."""
    _own(caller, user_id)
    row = keys.enrol_key(
        uow,
        user_id=user_id,
        name=body.name,
        public_key=body.public_key,
        challenge_id=body.challenge_id,
        signature=body.signature,
        now=c.clock(),
    )
    return key_out(row)


@router.post("/keys/{key_id}/confirm", response_model=KeyOut)
def confirm_key(
    key_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> KeyOut:
    """Confirm someone's enrolled key (the safety role; never your own): from now on it
    signs approvals. Check its fingerprint with its owner first, in person."""
    row = keys.confirm_key(uow, key_id, by=caller.user_id, roles=caller.roles, now=c.clock())
    return key_out(row)


def _own(caller: Principal, user_id: UUID) -> None:
    refusal = duties.key_enrolment_refusal(caller.user_id, user_id)
    if refusal is not None:
        raise PermissionDenied(refusal)


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
