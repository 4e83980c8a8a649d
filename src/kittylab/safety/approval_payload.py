"""The exact bytes an approver signs.

Canonical JSON (sorted keys, no whitespace, ASCII) of the fields that pin an approval to
one decision: the event, what it unlocks, who asked, a nonce the approver picks (each is
accepted once, ever) and when the event expires. A signature over these bytes cannot be
moved to another event, device or initiator, replayed, or used after the expiry.

Both sides build it with ``canonical``: the server from the stored event, ``kittylab
approve`` from ``GET /api/safety/events/{id}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

VERSION = 1
# Signatures from ``ssh-keygen -Y sign`` name what they are for; another namespace
# (a git commit signature, say) is refused.
SSH_NAMESPACE = "kittylab"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class ApprovalPayload:
    event_id: UUID
    intent: str
    device_id: UUID | None
    zone_id: UUID | None
    initiator_id: UUID
    nonce: str
    expires_at: datetime

    def fields(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "event": str(self.event_id),
            "intent": self.intent,
            "device": str(self.device_id) if self.device_id else None,
            "zone": str(self.zone_id) if self.zone_id else None,
            "initiator": str(self.initiator_id),
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
    if claimed.get("event") != wanted["event"]:
        return f"the signature was made for event {claimed.get('event')}, not this one"
    for name in ("v", "intent", "device", "zone", "initiator", "nonce", "expires"):
        if claimed.get(name) != wanted[name]:
            return f"the signed payload's {name!r} does not match this event (tampered)"
    return "the signed payload is not in canonical form (tampered)"
