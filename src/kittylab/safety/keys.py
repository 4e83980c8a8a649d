"""Approver keys: register, list, revoke, and find the key an approval was signed with.

A key is stored as its canonical OpenSSH line (``PublicKey.text``) and identified by its
material (type and data, no comment): the same key in another form or with another
comment is the same key. A key belongs to one person, and a revoked key stays revoked —
re-adding it is refused, so a key that was lost cannot quietly come back.

Every change is appended to the audit log (``key.added``, ``key.revoked``).

Enrolment over the API (issue 13, separation of duties): the owner asks for a challenge
(``issue_challenge``: random, short-lived, single use, bound to them), signs
``safety.enrolment.enrolment_message`` with the key's private half, and ``enrol_key``
verifies that before storing the key, ``awaiting_confirmation`` (audited ``key.enrolled``).
The key signs nothing until a second person with the safety role confirms it
(``confirm_key``, ``key.confirmed``). Keys added on the host (``kittylab keys add``) or
by a manifest applied on the host skip the confirmation; they are audited one by one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import KeyChallenge, User, UserKey
from kittylab.domain import duties
from kittylab.domain.enums import Role
from kittylab.domain.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    SignatureRejected,
    ValidationFailed,
)
from kittylab.records import audit
from kittylab.safety.enrolment import ENROLMENT_NAMESPACE, enrolment_message
from kittylab.safety.signatures import (
    BAD_SIGNATURE,
    KeyKind,
    PublicKey,
    parse_public_key,
    signature_key,
    verify,
)

MAX_NAME = 100
# Namespace of the per-key advisory locks (the two-int form: apart from the audit lock).
_KEY_LOCK_SPACE = 0x6B6579
CHALLENGE_TTL = timedelta(minutes=5)
"""Long enough to touch a hardware key or type a passphrase; short enough that a
challenge lying around is worth nothing."""
AWAITS_CONFIRMATION = (
    "awaits confirmation by a second person with the safety role (kittylab keys confirm)"
)


@dataclass(frozen=True)
class ActiveKey:
    """A registered, unrevoked key of one approver, parsed."""

    id: UUID
    user_id: UUID
    name: str
    key: PublicKey


def describe(row: UserKey) -> PublicKey | None:
    """The parsed key of a stored row; ``None`` for a row the verifier cannot read (a key
    stored before keys were checked this strictly: it can sign nothing)."""
    try:
        return parse_public_key(row.public_key)
    except ValidationFailed:
        return None


def validate_key_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ValidationFailed("name", "is required")
    if len(name) > MAX_NAME:
        raise ValidationFailed("name", f"is longer than {MAX_NAME} characters")
    if not name.isprintable():
        raise ValidationFailed("name", "must be printable text on one line")
    return name


def add_key(
    session: Session,
    *,
    user_id: UUID,
    name: str,
    public_key: str,
    actor_id: UUID | None,
    now: datetime,
    via: str = "api",
    awaiting_confirmation: bool = False,
    proof: str | None = None,
) -> UserKey:
    """Register ``public_key`` for the user. Refuses (``Conflict``) a key the user already
    has, a key revoked before (for anyone), and a key registered to another person.

    With ``awaiting_confirmation`` (enrolment over the API, ``enrol_key``) the key signs
    nothing until ``confirm_key``; audited ``key.enrolled`` then, ``key.added`` otherwise
    (the host's operator, who holds the database anyway)."""
    key = parse_public_key(public_key)
    clean_name = validate_key_name(name)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="userId")
    # Two requests adding the same key at once would both find it absent: serialize on it.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:material))"),
        {"space": _KEY_LOCK_SPACE, "material": key.material},
    )
    for row in _rows_with(session, key):
        if row.revoked_at is not None:
            raise Conflict(
                f"key {key.fingerprint} was revoked on {row.revoked_at.isoformat()} and stays "
                "revoked; make a new key pair",
                field="publicKey",
            )
        if row.user_id == user_id:
            raise Conflict(
                f"{user.username} already has this key ({row.name!r}, {key.fingerprint})",
                field="publicKey",
            )
        raise Conflict(
            f"key {key.fingerprint} is registered to another person; "
            "each approver signs with their own key",
            field="publicKey",
        )
    clashing = session.scalar(
        select(UserKey.id).where(
            UserKey.user_id == user_id, UserKey.name == clean_name, UserKey.revoked_at.is_(None)
        )
    )
    if clashing is not None:
        raise Conflict(f"{user.username} already has a key named {clean_name!r}", field="name")
    row = UserKey(
        user_id=user_id,
        name=clean_name,
        public_key=key.text,
        created_at=now,
        awaiting_confirmation=awaiting_confirmation,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        action="key.enrolled" if awaiting_confirmation else "key.added",
        actor_id=actor_id,
        now=now,
        subject_type="user_key",
        subject_id=row.id,
        details={
            "userId": str(user_id),
            "username": user.username,
            "name": clean_name,
            "kind": key.kind.label,
            "fingerprint": key.fingerprint,
            "via": via,
            "awaitingConfirmation": awaiting_confirmation,
            **({"proof": proof} if proof else {}),
        },
    )
    return row


# -- enrolment over the API: proof of possession, then a second person ---------------------


def issue_challenge(session: Session, user_id: UUID, now: datetime) -> KeyChallenge:
    """A fresh challenge for ``user_id`` (an active person) to sign when enrolling a key."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="userId")
    row = KeyChallenge(
        user_id=user_id,
        challenge=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + CHALLENGE_TTL,
    )
    session.add(row)
    session.flush()
    return row


def enrol_key(
    session: Session,
    *,
    user_id: UUID,
    name: str,
    public_key: str,
    challenge_id: UUID,
    signature: str,
    now: datetime,
) -> UserKey:
    """Enrol the owner's key once their signature over the challenge verifies with it.
    The challenge is spent by the attempt, whatever its outcome: a refused proof is
    committed (with its ``key.enrolment_refused`` audit entry) before it is raised. The
    key is stored ``awaiting_confirmation``.

    ``Conflict`` (``challengeId``): unknown, another person's, used or expired challenge;
    ``SignatureRejected``: the proof does not verify with this key."""
    key = parse_public_key(public_key)
    validate_key_name(name)  # a bad request is answered before the challenge is spent
    challenge = session.get(KeyChallenge, challenge_id, with_for_update=True)
    if challenge is None or challenge.user_id != user_id:
        raise Conflict("no such challenge was issued to this person", field="challengeId")
    if challenge.used_at is not None:
        raise Conflict(
            f"this challenge was already used at {challenge.used_at.isoformat()}; "
            "ask for a new one",
            field="challengeId",
        )
    if now >= challenge.expires_at:
        raise Conflict(
            f"this challenge expired at {challenge.expires_at.isoformat()}; ask for a new one",
            field="challengeId",
        )
    challenge.used_at = now
    message = enrolment_message(
        challenge_id=challenge.id,
        challenge=challenge.challenge,
        user_id=user_id,
        public_key=key.text,
        expires_at=challenge.expires_at,
    )
    try:
        verify(key, message, signature, namespace=ENROLMENT_NAMESPACE)
    except SignatureRejected as rejected:
        session.flush()
        audit.append(
            session,
            action="key.enrolment_refused",
            actor_id=user_id,
            now=now,
            subject_type="user",
            subject_id=user_id,
            details={"fingerprint": key.fingerprint, "reason": rejected.reason},
        )
        session.commit()
        raise
    return add_key(
        session,
        user_id=user_id,
        name=name,
        public_key=key.text,
        actor_id=user_id,
        now=now,
        via="api",
        awaiting_confirmation=True,
        proof="signed challenge",
    )


def confirm_key(
    session: Session, key_id: UUID, *, by: UUID, roles: frozenset[Role], now: datetime
) -> UserKey:
    """A second person with the safety role confirms an enrolled key: from now on it can
    sign approvals. ``PermissionDenied`` for its owner or anyone without the safety role;
    ``Conflict`` for a revoked key or one that needs no confirmation."""
    row = session.get(UserKey, key_id, with_for_update=True)
    if row is None:
        raise NotFound("key", key_id)
    refusal = duties.key_confirm_refusal(by, roles, row.user_id)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if row.revoked_at is not None:
        raise Conflict(f"key {key_id} was revoked on {row.revoked_at.isoformat()}")
    if not row.awaiting_confirmation:
        raise Conflict(f"key {key_id} is not awaiting confirmation")
    row.awaiting_confirmation = False
    row.confirmed_by = by
    row.confirmed_at = now
    _audit_existing(session, row, "key.confirmed", by, now)
    return row


def revoke_key(
    session: Session,
    key_id: UUID,
    *,
    actor_id: UUID | None,
    now: datetime,
    allowed_owner: UUID | None = None,
    via: str = "api",
) -> UserKey:
    """Revoke a key at once: approvals signed with it are refused from then on. With
    ``allowed_owner`` (a caller who is not an admin), only that person's keys may be
    revoked. Revoking a revoked key is a ``Conflict`` naming when it was revoked."""
    row = session.get(UserKey, key_id, with_for_update=True)
    if row is None:
        raise NotFound("key", key_id)
    if allowed_owner is not None and row.user_id != allowed_owner:
        raise PermissionDenied("only the key's owner or an admin can revoke it")
    if row.revoked_at is not None:
        raise Conflict(f"key {key_id} was already revoked on {row.revoked_at.isoformat()}")
    row.revoked_at = now
    _audit_existing(session, row, "key.revoked", actor_id, now, via=via)
    return row


def _audit_existing(
    session: Session,
    row: UserKey,
    action: str,
    actor_id: UUID | None,
    now: datetime,
    **extra: str,
) -> None:
    """An audit entry for a change to a stored key, naming its owner and fingerprint."""
    parsed = describe(row)
    owner = session.get(User, row.user_id)
    session.flush()
    audit.append(
        session,
        action=action,
        actor_id=actor_id,
        now=now,
        subject_type="user_key",
        subject_id=row.id,
        details={
            "userId": str(row.user_id),
            "username": owner.username if owner is not None else None,
            "name": row.name,
            "fingerprint": parsed.fingerprint if parsed is not None else None,
            **extra,
        },
    )


def list_keys(session: Session, user_id: UUID | None = None) -> list[UserKey]:
    """Keys, newest first: one user's, or everyone's; revoked ones included."""
    stmt = select(UserKey).order_by(UserKey.created_at.desc(), UserKey.id.desc())
    if user_id is not None:
        stmt = stmt.where(UserKey.user_id == user_id)
    return list(session.scalars(stmt))


def active_key_for(session: Session, user_id: UUID, key: PublicKey | UUID) -> ActiveKey:
    """The approver's registered, unrevoked key that is ``key`` (a key, as found inside an
    SSH signature, or a key id). Raises ``SignatureRejected`` saying whether the key is
    unknown, revoked (and since when), or another person's.

    The row is share-locked until the transaction ends, so a revocation running at the
    same moment waits for this approval and cannot be overtaken by it."""
    if isinstance(key, UUID):
        rows = [row] if (row := session.get(UserKey, key)) is not None else []
        label = f"key {key}"
    else:
        rows = _rows_with(session, key)
        label = f"key {key.fingerprint}"
    if not rows:
        raise SignatureRejected(f"{label} is not registered to anyone")
    own = [row for row in rows if row.user_id == user_id]
    if not own:
        raise SignatureRejected(f"{label} belongs to another person, not this approver")
    unconfirmed = False
    for row in own:
        if row.revoked_at is None:
            locked = session.get(
                UserKey, row.id, with_for_update={"read": True}, populate_existing=True
            )
            if locked is not None and locked.revoked_at is None:
                if locked.awaiting_confirmation:
                    unconfirmed = True
                    continue
                parsed = describe(locked)
                if parsed is None:
                    raise SignatureRejected(f"{label} is stored in a form that cannot verify")
                return ActiveKey(locked.id, locked.user_id, locked.name, parsed)
    if unconfirmed:
        raise SignatureRejected(f"{label} {AWAITS_CONFIRMATION}")
    revoked = max(row.revoked_at for row in own if row.revoked_at is not None)
    raise SignatureRejected(f"{label} was revoked on {revoked.isoformat()}")


def active_keys(session: Session, user_id: UUID) -> list[ActiveKey]:
    """The approver's keys that can sign now (unrevoked, confirmed and readable), newest
    first."""
    return [key for key, pending in _unrevoked(session, user_id) if not pending]


def _unrevoked(session: Session, user_id: UUID) -> list[tuple[ActiveKey, bool]]:
    """Unrevoked readable keys, each with whether it still awaits confirmation."""
    found: list[tuple[ActiveKey, bool]] = []
    for row in list_keys(session, user_id):
        parsed = describe(row)
        if row.revoked_at is None and parsed is not None:
            found.append(
                (ActiveKey(row.id, row.user_id, row.name, parsed), row.awaiting_confirmation)
            )
    return found


def verify_approval_signature(
    session: Session, user_id: UUID, message: bytes, signature: str
) -> ActiveKey:
    """The approver's key that made ``signature`` over ``message``, or
    ``SignatureRejected`` with the precise reason. An SSH signature names its key, which
    must be one of the approver's active keys; a raw Ed25519 signature names none, so it is
    checked against each of the approver's active Ed25519 keys."""
    embedded = signature_key(signature)
    if embedded is not None:
        found = active_key_for(session, user_id, embedded)
        verify(found.key, message, signature)
        return found
    unrevoked = _unrevoked(session, user_id)
    if not unrevoked:
        raise SignatureRejected("the approver has no registered key (see `kittylab keys add`)")
    software = [(k, pending) for k, pending in unrevoked if k.key.kind is KeyKind.ED25519]
    if not software:
        raise SignatureRejected(
            "a raw signature needs a registered Ed25519 key; this approver's keys sign "
            "with 'ssh-keygen -Y sign -n kittylab'"
        )
    for candidate, pending in software:
        try:
            verify(candidate.key, message, signature)
        except SignatureRejected as exc:
            if exc.reason != BAD_SIGNATURE:
                raise
            continue
        if pending:
            raise SignatureRejected(f"key {candidate.key.fingerprint} {AWAITS_CONFIRMATION}")
        # Lock it against a concurrent revocation, and re-check it is still active.
        return active_key_for(session, user_id, candidate.id)
    raise SignatureRejected(BAD_SIGNATURE)


def _rows_with(session: Session, key: PublicKey) -> list[UserKey]:
    """Stored rows holding ``key``, whatever comment they carry."""
    material = key.material
    return list(
        session.scalars(
            select(UserKey).where(
                or_(
                    UserKey.public_key == material,
                    # base64 has no LIKE wildcards ('%', '_'), so this is an exact prefix.
                    UserKey.public_key.startswith(material + " "),
                )
            )
        )
    )
