"""The exact bytes an approver signs.

Canonical JSON (sorted keys, no whitespace, ASCII) of the fields that pin an approval to
one decision: the event, what it unlocks, who asked, the command it holds and a digest of
that command's arguments, a nonce the approver picks (each is accepted once, ever) and
when the event expires. A signature over these bytes cannot be moved to another event,
device, initiator, command or set of arguments, replayed, or used after the expiry.

Both sides build it with ``canonical``: the server from the stored event and its held
command, ``kittylab approve`` from ``GET /api/safety/events/{id}`` — computing the
arguments' digest itself from the arguments it shows, never taking the server's word.

Version 2 (issue 13) added ``command`` and ``args``; a version 1 signature, which left
the arguments open, is refused. docs/safety-keys.md describes the format for signers
outside KittyLab.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

VERSION = 2
# Signatures from ``ssh-keygen -Y sign`` name what they are for; another namespace
# (a git commit signature, say) is refused.
SSH_NAMESPACE = "kittylab"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def canonical_arguments(arguments: Mapping[str, Any]) -> bytes:
    """A command's arguments as the bytes their digest is taken over: JSON with sorted
    keys, no whitespace, non-ASCII escaped (``\\u00fc``), numbers as Python writes them."""
    return json.dumps(
        dict(arguments), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of ``canonical_arguments``: what an approval says about them."""
    return "sha256:" + hashlib.sha256(canonical_arguments(arguments)).hexdigest()


@dataclass(frozen=True)
class ApprovalPayload:
    event_id: UUID
    intent: str
    device_id: UUID | None
    zone_id: UUID | None
    initiator_id: UUID
    nonce: str
    expires_at: datetime
    command_id: UUID | None = None
    """The command the event holds; ``None`` for an event that holds none."""
    arguments_digest: str | None = None
    """``arguments_digest`` of that command's payload; ``None`` with ``command_id``."""

    def fields(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "event": str(self.event_id),
            "intent": self.intent,
            "device": str(self.device_id) if self.device_id else None,
            "zone": str(self.zone_id) if self.zone_id else None,
            "initiator": str(self.initiator_id),
            "command": str(self.command_id) if self.command_id else None,
            "args": self.arguments_digest,
            "nonce": self.nonce,
            "expires": self.expires_at.astimezone(UTC).isoformat(timespec="seconds"),
        }

    def canonical(self) -> bytes:
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode("ascii")


def mismatch(expected: ApprovalPayload, signed: bytes) -> str | None:
    """Why ``signed`` (the bytes an approver says they signed) is not the payload of this
    event, naming the first field that differs; ``None`` when it is exactly it."""
    if signed == expected.canonical():
        return None
    try:
        claimed = json.loads(signed)
    except (ValueError, UnicodeDecodeError):
        return "the signed payload is not the JSON KittyLab asks approvers to sign"
    if not isinstance(claimed, dict):
        return "the signed payload is not the JSON KittyLab asks approvers to sign"
    wanted = expected.fields()
    if claimed.get("v") != VERSION:
        return (
            f"the signed payload is format version {claimed.get('v')}; this server accepts "
            f"version {VERSION}, which also covers the command's arguments: update the "
            "approving client (kittylab approve) or the external signer (docs/safety-keys.md)"
        )
    if claimed.get("event") != wanted["event"]:
        return f"the signature was made for event {claimed.get('event')}, not this one"
    for name in ("intent", "device", "zone", "initiator", "command", "args", "nonce", "expires"):
        if claimed.get(name) != wanted[name]:
            return f"the signed payload's {name!r} does not match this event (tampered)"
    return "the signed payload is not in canonical form (tampered)"
