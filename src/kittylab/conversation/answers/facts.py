"""What an answer is made of: plain facts read from the lab's records (``reading``) and put
into words (``wording``). Pure data; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class DeviceFact:
    """A device and its newest reported state."""

    id: UUID
    external_id: str
    display_name: str
    kind: str
    zone: str
    online: bool
    state: dict[str, Any] | None
    reported_at: datetime | None
    interval_seconds: float
    """How often the device reports (or is read): older than this, a reading is stale."""
    capabilities: frozenset[str] = frozenset()
    note: str | None = None
    """Why the reading is not fresh, when a fresh read was asked for and did not come."""

    def age_seconds(self, now: datetime) -> float | None:
        if self.reported_at is None:
            return None
        return max(0.0, (now - self.reported_at).total_seconds())


@dataclass(frozen=True)
class LockHeld:
    device_name: str
    device_external_id: str
    zone: str
    owner_id: UUID
    owner_name: str
    reason: str
    placed_at: datetime


@dataclass(frozen=True)
class Presence:
    zone: str
    people: tuple[str, ...]
    """Display names of those present now."""


@dataclass(frozen=True)
class JobFact:
    id: UUID
    printer: str
    printer_external_id: str
    file: str
    status: str
    stage: str | None
    owner_id: UUID
    owner_name: str
    created_at: datetime
    completed_at: datetime | None
    reason: str | None = None


@dataclass(frozen=True)
class ApprovalFact:
    event_id: UUID
    intent: str | None
    device_name: str | None
    zone: str | None
    initiator_name: str
    created_at: datetime
    expires_at: datetime | None
    approvals: int
    needed: int
    mine_to_give: bool
    """The asker may approve it: a required role, not its initiator, not approved yet."""


@dataclass(frozen=True)
class SnapshotFact:
    """The newest snapshot a camera's zone has on record: where it is and when."""

    link: str
    taken_at: datetime | None
    source: str


@dataclass(frozen=True)
class Image:
    """A picture an answer shows (issue 16): where this server serves it, of which
    device, taken when."""

    url: str
    device: str
    taken_at: datetime | None


@dataclass
class Answer:
    """A state question answered: the reply and what it was about (recorded with the
    routing decision; never the question's text)."""

    kind: str
    reply: str
    devices: list[str] = field(default_factory=list)
    zone: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    """The values the reply gives, by name (``temperature``, ``state``, ``people`` …)."""
    fresh_reads: list[UUID] = field(default_factory=list)
    """Commands asking for a fresh reading, when the stored one was stale."""
    images: list[Image] = field(default_factory=list)
    """Pictures the reply links, for a client that can show them."""
    refused: bool = False
