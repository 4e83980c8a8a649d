"""Passkeys: the console's sign-in (issue 17), with WebAuthn doing the ceremony (the
``webauthn`` package verifies what the browser's authenticator made).

A person's first passkey comes from a one-time enrolment link that the server host mints
(``kittylab users invite NAME``) or an admin has emailed to the person's own address
(``people.invites``): valid ``console.invite_minutes``, used once, never shown to anyone
but the person it is for, so no admin can enrol as someone else. The link's secret is
stored as its SHA-256 only, like API tokens.

Each ceremony has a challenge of its own (``webauthn_challenges``): random, bound to its
purpose (and, to register, to its invite), valid ``CEREMONY_SECONDS`` and taken once —
by the first answer, whether it then verifies or not.

Every change leaves an audit entry in the same transaction: ``invite.issued``,
``passkey.enrolled`` (which also spends the invite), ``passkey.revoked``. A sign-in is
audited where it starts a session (``people.web_sessions``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import webauthn
from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn.helpers import bytes_to_base64url, options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from kittylab.adapters.db.tables import ConsoleInvite, Passkey, User, WebauthnChallenge
from kittylab.domain.errors import AuthenticationRequired, Conflict, NotFound, ValidationFailed
from kittylab.domain.web_origin import check_origin
from kittylab.records import audit

INVITE_PREFIX = "kli_"
CEREMONY_SECONDS = 300
"""How long a browser has to finish a ceremony it asked for."""


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: ``console.rp_id`` and the origins allowed to ask."""

    id: str
    name: str
    origins: tuple[str, ...] = ()

    def origin(self, header: str | None) -> str:
        return check_origin(header, self.id, self.origins)


@dataclass(frozen=True)
class IssuedInvite:
    token: str
    invite_id: UUID
    user_id: UUID
    expires_at: datetime


@dataclass(frozen=True)
class Ceremony:
    """What the browser needs: the challenge's id (sent back with the answer) and the
    ``publicKey`` options for ``navigator.credentials``, JSON-ready (binary as base64url)."""

    challenge_id: UUID
    public_key: dict[str, Any]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_invite(
    session: Session,
    user: User,
    *,
    lifetime: timedelta,
    now: datetime,
    actor_id: UUID | None = None,
) -> IssuedInvite:
    """A new enrolment link's secret for an active ``user``. Audited (never the secret)."""
    if not user.active:
        raise Conflict(f"user {user.username} is inactive", field="username")
    token = INVITE_PREFIX + secrets.token_urlsafe(32)
    row = ConsoleInvite(
        user_id=user.id, token_hash=_hash(token), created_by=actor_id, expires_at=now + lifetime
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        action="invite.issued",
        actor_id=actor_id,
        now=now,
        subject_type="console_invite",
        subject_id=row.id,
        details={"user_id": user.id, "username": user.username, "expires_at": row.expires_at},
    )
    return IssuedInvite(token, row.id, user.id, row.expires_at)


def _usable_invite(session: Session, token: str, now: datetime, *, lock: bool) -> ConsoleInvite:
    stmt = select(ConsoleInvite).where(ConsoleInvite.token_hash == _hash(token.strip()))
    if lock:
        stmt = stmt.with_for_update()
    invite = session.scalar(stmt)
    if invite is None:
        raise NotFound("enrolment link", "(given)")
    if invite.used_at is not None:
        raise Conflict(
            "this enrolment link was already used; ask for a new one "
            "(kittylab users invite NAME on the server)",
            field="invite",
        )
    if now >= invite.expires_at:
        raise Conflict(
            "this enrolment link has expired; ask for a new one "
            "(kittylab users invite NAME on the server)",
            field="invite",
        )
    user = session.get(User, invite.user_id)
    if user is None or not user.active:
        raise Conflict("the person this link was made for is inactive", field="invite")
    return invite


def _new_challenge(
    session: Session, purpose: str, challenge: bytes, now: datetime, invite_id: UUID | None
) -> UUID:
    row = WebauthnChallenge(
        purpose=purpose,
        challenge=bytes_to_base64url(challenge),
        invite_id=invite_id,
        expires_at=now + timedelta(seconds=CEREMONY_SECONDS),
    )
    session.add(row)
    session.flush()
    return row.id


def _take_challenge(
    session: Session,
    challenge_id: UUID,
    purpose: str,
    now: datetime,
    invite_id: UUID | None = None,
) -> bytes:
    """The challenge's bytes, marked used and committed at once, so an attempt that
    then fails has spent it too (one try per challenge); a used, expired or foreign one
    is refused."""
    row = session.scalar(
        select(WebauthnChallenge).where(WebauthnChallenge.id == challenge_id).with_for_update()
    )
    if (
        row is None
        or row.purpose != purpose
        or row.invite_id != invite_id
        or row.used_at is not None
        or now >= row.expires_at
    ):
        raise ValidationFailed(
            "challengeId", "this sign-in attempt is over or unknown; start again"
        )
    row.used_at = now
    challenge = webauthn.base64url_to_bytes(row.challenge)
    session.commit()
    return challenge


def registration_options(
    session: Session, rp: RelyingParty, invite_token: str, now: datetime
) -> Ceremony:
    """Start enrolling a passkey with an invite (refused when used, expired or unknown)."""
    invite = _usable_invite(session, invite_token, now, lock=False)
    user = session.get(User, invite.user_id)
    assert user is not None  # _usable_invite checked it
    existing = session.scalars(
        select(Passkey.credential_id).where(
            Passkey.user_id == user.id, Passkey.revoked_at.is_(None)
        )
    ).all()
    options = webauthn.generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=user.username,
        user_id=user.id.bytes,
        user_display_name=user.display_name,
        timeout=CEREMONY_SECONDS * 1000,
        # Discoverable, so signing in needs no user name: pick the passkey, done.
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c)) for c in existing
        ],
    )
    challenge_id = _new_challenge(session, "register", options.challenge, now, invite.id)
    return Ceremony(challenge_id, options_to_json_dict(options))


def register(
    session: Session,
    rp: RelyingParty,
    *,
    invite_token: str,
    challenge_id: UUID,
    credential: Mapping[str, Any],
    origin: str | None,
    name: str,
    now: datetime,
) -> Passkey:
    """Verify the browser's new credential and keep it as the invited person's passkey;
    the invite is spent. Two tabs racing with one invite: the second is refused."""
    invite_id = _usable_invite(session, invite_token, now, lock=False).id
    challenge = _take_challenge(session, challenge_id, "register", now, invite_id)
    # Locked after the challenge's commit, and held to the end: of two tabs racing with
    # one link, the second waits here and then finds it used.
    invite = _usable_invite(session, invite_token, now, lock=True)
    expected_origin = rp.origin(origin)
    try:
        verified = webauthn.verify_registration_response(
            credential=dict(credential),
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=expected_origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise ValidationFailed("credential", f"the passkey could not be verified: {exc}") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise Conflict("this passkey is already enrolled", field="credential")
    passkey = Passkey(
        user_id=invite.user_id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=(name.strip() or "passkey")[:100],
        transports=_transports(credential),
        invite_id=invite.id,
    )
    session.add(passkey)
    invite.used_at = now
    session.flush()
    audit.append(
        session,
        action="passkey.enrolled",
        actor_id=invite.user_id,
        now=now,
        subject_type="passkey",
        subject_id=passkey.id,
        details={"user_id": invite.user_id, "invite_id": invite.id, "name": passkey.name},
    )
    return passkey


def _transports(credential: Mapping[str, Any]) -> list[str]:
    response = credential.get("response")
    raw = response.get("transports") if isinstance(response, Mapping) else None
    known = {t.value for t in AuthenticatorTransport}
    return (
        [t for t in raw if isinstance(t, str) and t in known][:8] if isinstance(raw, list) else []
    )


def authentication_options(session: Session, rp: RelyingParty, now: datetime) -> Ceremony:
    """Start a sign-in: any of the lab's passkeys on this authenticator may answer."""
    options = webauthn.generate_authentication_options(
        rp_id=rp.id,
        timeout=CEREMONY_SECONDS * 1000,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    challenge_id = _new_challenge(session, "authenticate", options.challenge, now, None)
    return Ceremony(challenge_id, options_to_json_dict(options))


def authenticate(
    session: Session,
    rp: RelyingParty,
    *,
    challenge_id: UUID,
    credential: Mapping[str, Any],
    origin: str | None,
    now: datetime,
) -> Passkey:
    """The passkey that answered the challenge, its counter and last use updated; a
    passkey unknown here, revoked, or whose person is inactive is ``AuthenticationRequired``."""
    challenge = _take_challenge(session, challenge_id, "authenticate", now)
    expected_origin = rp.origin(origin)
    raw_id = credential.get("rawId") or credential.get("id")
    passkey = (
        session.scalar(select(Passkey).where(Passkey.credential_id == raw_id).with_for_update())
        if isinstance(raw_id, str)
        else None
    )
    user = session.get(User, passkey.user_id) if passkey is not None else None
    if passkey is None or passkey.revoked_at is not None or user is None or not user.active:
        raise AuthenticationRequired(
            "this passkey is not enrolled here (or was revoked); ask for an enrolment link"
        )
    _check_user_handle(credential, user.id)
    try:
        verified = webauthn.verify_authentication_response(
            credential=dict(credential),
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=expected_origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise AuthenticationRequired(f"the passkey's answer did not verify: {exc}") from None
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = now
    return passkey


def _check_user_handle(credential: Mapping[str, Any], user_id: UUID) -> None:
    """A discoverable credential names its person; it must be the passkey's owner."""
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, Mapping) else None
    if not handle:
        return
    try:
        matches = webauthn.base64url_to_bytes(str(handle)) == user_id.bytes
    except ValueError:
        matches = False
    if not matches:
        raise AuthenticationRequired("the passkey answered for someone else")


def list_passkeys(session: Session, user_id: UUID) -> Sequence[Passkey]:
    return session.scalars(
        select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
    ).all()


def revoke_passkey(
    session: Session, user_id: UUID, passkey_id: UUID, now: datetime, *, actor_id: UUID
) -> None:
    """Revoke one of ``user_id``'s passkeys (again: nothing changes). Audited."""
    passkey = session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != user_id:
        raise NotFound("passkey", passkey_id)
    if passkey.revoked_at is not None:
        return
    passkey.revoked_at = now
    audit.append(
        session,
        action="passkey.revoked",
        actor_id=actor_id,
        now=now,
        subject_type="passkey",
        subject_id=passkey.id,
        details={"user_id": user_id, "name": passkey.name},
    )
