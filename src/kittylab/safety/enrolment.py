"""What an approver signs to prove they hold the private half of a key they enrol.

The server issues a challenge (``kittylab.safety.keys.issue_challenge``): random,
short-lived, single use and bound to one person. The owner signs ``enrolment_message``
built from it and from the public key being enrolled; the server rebuilds the same bytes
from its stored challenge and verifies the signature with that public key before storing
it. The message is built on the owner's machine from the challenge's fields, never taken
from the server as bytes to sign: a client that signed whatever the server sent could be
made to sign an approval.

The message cannot be mistaken for an approval: it is text starting with a fixed line,
never the canonical JSON of an ``ApprovalPayload``, and SSH signatures over it use their
own namespace (``ENROLMENT_NAMESPACE``, not ``kittylab``), so neither a raw Ed25519 nor an
SSH signature of an enrolment verifies as an approval, nor the reverse.

Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from kittylab.safety.signatures import parse_public_key

ENROLMENT_NAMESPACE = "kittylab-key-enrolment"
HEADER = "kittylab key enrolment v1"


def enrolment_message(
    *,
    challenge_id: UUID,
    challenge: str,
    user_id: UUID,
    public_key: str,
    expires_at: datetime,
) -> bytes:
    """The bytes the owner signs. ``public_key`` may be given in any accepted form; the
    message names its canonical material (type and data), so the form and comment do not
    matter, but the key does. Raises ``ValidationFailed`` (``publicKey``) for a key the
    verifier would not accept."""
    material = parse_public_key(public_key).material
    lines = (
        HEADER,
        f"challenge: {challenge_id}",
        f"nonce: {challenge}",
        f"user: {user_id}",
        f"key: {material}",
        f"expires: {expires_at.astimezone(UTC).isoformat()}",
    )
    return ("\n".join(lines) + "\n").encode("ascii")
