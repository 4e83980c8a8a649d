"""Approving with a passkey (issue 17): a WebAuthn assertion as an approval signature.

The browser's authenticator signs a challenge; for an approval the challenge is the
SHA-256 of the event's canonical approval payload (``approval_payload``, version 2), so
the assertion binds the event, its held command and arguments, the nonce and the expiry
exactly as an SSH or Ed25519 signature over the same bytes does. The server rebuilds the
payload from the stored event and checks the assertion against it, with user
verification required (a PIN or a fingerprint, not just a touch).

The signature text is ``webauthn:`` followed by base64url (no padding) of the browser's
``PublicKeyCredential`` as JSON (``signature_text``); ``POST /api/safety/events/{id}/approve``
takes it like any other signature.

A passkey signs approvals only once it is an approval key (``user_keys`` with
``passkey_id``): enrolled by its owner from their signed-in console (``enrol_passkey``:
the passkey itself was proven at its registration, and only its owner can name it), then
confirmed by a second person with the safety role (``keys.confirm_key``), like every key
enrolled over the API. Revoking the passkey or the key stops it signing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import webauthn
from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn.helpers.exceptions import WebAuthnException

from kittylab.adapters.db.tables import Passkey, User, UserKey
from kittylab.domain.errors import Conflict, NotFound, SignatureRejected, ValidationFailed
from kittylab.people.passkeys import RelyingParty
from kittylab.records import audit
from kittylab.safety.keys import AWAITS_CONFIRMATION

PREFIX = "webauthn:"
KEY_PREFIX = "webauthn:"
"""``user_keys.public_key`` of a passkey approval key: ``webauthn:<credential id>``."""
KIND = "webauthn"
CEREMONY_MS = 120_000
"""How long the browser waits for the approver's passkey."""


def is_webauthn(signature: str) -> bool:
    return signature.startswith(PREFIX)


def challenge_for(message: bytes) -> bytes:
    """What the authenticator signs over: the SHA-256 of the approval payload's bytes."""
    return hashlib.sha256(message).digest()


def signature_text(credential: Mapping[str, Any]) -> str:
    """The approval signature for a browser's assertion (``PublicKeyCredential`` JSON)."""
    raw = json.dumps(dict(credential), sort_keys=True, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _credential(signature: str) -> dict[str, Any]:
    body = signature[len(PREFIX) :].strip()
    try:
        decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SignatureRejected(
            "the passkey signature is not base64url of the browser's credential JSON"
        ) from None
    if not isinstance(decoded, dict):
        raise SignatureRejected("the passkey signature is not a WebAuthn credential")
    return decoded


def fingerprint(passkey: Passkey) -> str:
    """``SHA256:<base64>`` of the passkey's public key (COSE), to compare in person."""
    digest = hashlib.sha256(passkey.public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def approval_key(session: Session, passkey_id: UUID) -> UserKey | None:
    return session.scalar(select(UserKey).where(UserKey.passkey_id == passkey_id))


def enrol_passkey(session: Session, *, user_id: UUID, passkey_id: UUID, now: datetime) -> UserKey:
    """Make the owner's passkey an approval key, ``awaiting_confirmation`` by a second
    safety person (audited ``key.enrolled``). Only its owner can: the caller is the
    signed-in person, and the passkey must be theirs and unrevoked."""
    passkey = session.get(Passkey, passkey_id, with_for_update=True)
    if passkey is None or passkey.user_id != user_id:
        raise NotFound("passkey", passkey_id)
    if passkey.revoked_at is not None:
        raise Conflict("this passkey was revoked; it cannot approve", field="passkeyId")
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise Conflict("inactive people cannot enrol approval keys", field="passkeyId")
    existing = approval_key(session, passkey_id)
    if existing is not None:
        state = (
            "was revoked and stays revoked"
            if existing.revoked_at is not None
            else "awaits confirmation by a second safety person"
            if existing.awaiting_confirmation
            else "already approves"
        )
        raise Conflict(f"this passkey {state}", field="passkeyId")
    name = f"passkey: {passkey.name}"[:100]
    row = UserKey(
        user_id=user_id,
        name=name,
        public_key=KEY_PREFIX + passkey.credential_id,
        created_at=now,
        awaiting_confirmation=True,
        passkey_id=passkey.id,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        action="key.enrolled",
        actor_id=user_id,
        now=now,
        subject_type="user_key",
        subject_id=row.id,
        details={
            "userId": str(user_id),
            "username": user.username,
            "name": name,
            "kind": KIND,
            "fingerprint": fingerprint(passkey),
            "via": "console",
            "awaitingConfirmation": True,
            "proof": "the owner's passkey, registered with their enrolment link",
        },
    )
    return row


def verify_approval(
    session: Session, user_id: UUID, message: bytes, signature: str, rp: RelyingParty | None
) -> UUID:
    """The id of the approver's confirmed passkey approval key whose assertion
    ``signature`` is over ``message`` (with user verification); ``SignatureRejected``
    with the precise reason otherwise. The key row is share-locked until commit, so a
    revocation running at the same moment cannot be overtaken."""
    if rp is None:
        raise SignatureRejected("this server does not take passkey approvals (no console)")
    credential = _credential(signature)
    raw_id = credential.get("rawId") or credential.get("id")
    passkey = (
        session.scalar(select(Passkey).where(Passkey.credential_id == raw_id).with_for_update())
        if isinstance(raw_id, str)
        else None
    )
    if passkey is None:
        raise SignatureRejected("this passkey is not registered to anyone")
    label = f"passkey {fingerprint(passkey)}"
    if passkey.user_id != user_id:
        raise SignatureRejected(f"{label} belongs to another person, not this approver")
    key = session.scalar(
        select(UserKey)
        .where(UserKey.passkey_id == passkey.id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if key is None:
        raise SignatureRejected(
            f"{label} is not an approval key: enrol it on the safety desk "
            "(“Use this passkey to approve”), then have a second safety person confirm it"
        )
    if passkey.revoked_at is not None or key.revoked_at is not None:
        when = passkey.revoked_at or key.revoked_at
        assert when is not None
        raise SignatureRejected(f"{label} was revoked on {when.isoformat()}")
    if key.awaiting_confirmation:
        raise SignatureRejected(f"{label} {AWAITS_CONFIRMATION}")
    try:
        origin = rp.origin(_client_origin(credential))
    except ValidationFailed as refused:
        raise SignatureRejected(f"the passkey signed for another site: {refused}") from None
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge_for(message),
            expected_rp_id=rp.id,
            expected_origin=origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        reason = str(exc)
        if "challenge" in reason.lower():
            raise SignatureRejected(
                "does not verify: the passkey signed another payload (another event, nonce "
                "or expiry, or it was altered)"
            ) from None
        raise SignatureRejected(f"the passkey's assertion does not verify: {reason}") from None
    passkey.sign_count = verified.new_sign_count
    return key.id


def _client_origin(credential: Mapping[str, Any]) -> str | None:
    response = credential.get("response")
    data = response.get("clientDataJSON") if isinstance(response, Mapping) else None
    if not isinstance(data, str):
        return None
    try:
        client = json.loads(webauthn.base64url_to_bytes(data))
    except (ValueError, binascii.Error):
        return None
    origin = client.get("origin") if isinstance(client, dict) else None
    return origin if isinstance(origin, str) else None
