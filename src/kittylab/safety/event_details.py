"""A safety event's ``details``, typed: the one place they are read and written.

``read(event)`` gives an ``EventDetails``; ``write(event, details)`` stores one back,
changing only the keys whose value changed (``domain.json_details.merged``): keys this
module does not know stay as stored. Reading is tolerant: a value of an unexpected shape
reads as absent. The keys on disk (and in the API's ``details``) are::

    intent                 what the held request asks (a lab change: ``lab_change:<hash>``)
    requirements           what an approval needs (``policy.Requirements.to_json``);
                           absent: the event takes no approvals (overrides)
    command_id             the command the event holds
    approved_at            when the last approval completed it
    denied_by              who denied it
    not_sent               why its approved command was not sent after all
    evidence_unavailable   why no camera snapshot was kept as its evidence
    override               lock | presence: a safety override, and what it overrode:
                           lock_id, owner_id (lock); user_id, status, presence_id (presence)
    change, policies, tallies, changes, manifest, applied
                           a held lab change (``manifest.review``)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from kittylab.adapters.db.tables import SafetyEvent
from kittylab.domain import json_details as j
from kittylab.safety.policy import Requirements


@dataclass(frozen=True)
class LabChange:
    """The lab change a ``policy_change`` event holds (``manifest.review.Review.to_json``)."""

    hash: str | None
    revision: str | None
    manifest_sha256: str | None
    weakening: tuple[Mapping[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "revision": self.revision,
            "manifest_sha256": self.manifest_sha256,
            "weakening": [dict(w) for w in self.weakening],
        }


@dataclass(frozen=True)
class EventDetails:
    intent: str | None = None
    requirements: Requirements | None = None
    command_id: UUID | None = None
    approved_at: datetime | None = None
    denied_by: UUID | None = None
    not_sent: str | None = None
    evidence_unavailable: str | None = None
    override: str | None = None
    """What a safety override overrode: ``lock`` or ``presence``."""
    lock_id: UUID | None = None
    owner_id: UUID | None = None
    user_id: UUID | None = None
    """Whose presence a presence override stated."""
    presence_status: str | None = None
    """The presence it stated (``status`` on disk)."""
    presence_id: UUID | None = None
    change: LabChange | None = None
    policies: tuple[str, ...] | None = None
    tallies: Mapping[str, Any] | None = None
    changes: tuple[Mapping[str, Any], ...] | None = None
    """Every change a held lab change's apply would make, field by field (what the safety
    desk shows its approver; ``manifest.review``)."""
    manifest: str | None = None
    """The YAML of a held lab change, applied as it is when approved."""
    applied: Mapping[str, Any] | None = None

    @property
    def takes_approvals(self) -> bool:
        return self.requirements is not None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], policy_id: UUID | None) -> EventDetails:
        """``policy_id``: the event's policy, which ``Requirements`` carries."""
        policies = raw.get("policies")
        return cls(
            intent=j.text(raw, "intent"),
            requirements=_requirements(raw.get("requirements"), policy_id),
            command_id=j.identifier(raw, "command_id"),
            approved_at=j.timestamp(raw, "approved_at"),
            denied_by=j.identifier(raw, "denied_by"),
            not_sent=j.text(raw, "not_sent"),
            evidence_unavailable=j.text(raw, "evidence_unavailable"),
            override=j.text(raw, "override"),
            lock_id=j.identifier(raw, "lock_id"),
            owner_id=j.identifier(raw, "owner_id"),
            user_id=j.identifier(raw, "user_id"),
            presence_status=j.text(raw, "status"),
            presence_id=j.identifier(raw, "presence_id"),
            change=_change(raw.get("change")),
            policies=j.texts(raw, "policies") if isinstance(policies, list) else None,
            tallies=j.mapping(raw, "tallies"),
            changes=_changes(raw.get("changes")),
            manifest=j.text(raw, "manifest"),
            applied=j.mapping(raw, "applied"),
        )

    def to_json(self) -> dict[str, Any]:
        return j.present(
            {
                "intent": self.intent,
                "requirements": self.requirements.to_json() if self.requirements else None,
                "command_id": _text(self.command_id),
                "approved_at": j.stamp(self.approved_at),
                "denied_by": _text(self.denied_by),
                "not_sent": self.not_sent,
                "evidence_unavailable": self.evidence_unavailable,
                "override": self.override,
                "lock_id": _text(self.lock_id),
                "owner_id": _text(self.owner_id),
                "user_id": _text(self.user_id),
                "status": self.presence_status,
                "presence_id": _text(self.presence_id),
                "change": self.change.to_json() if self.change is not None else None,
                "policies": list(self.policies) if self.policies is not None else None,
                "tallies": dict(self.tallies) if self.tallies is not None else None,
                "changes": [dict(c) for c in self.changes] if self.changes is not None else None,
                "manifest": self.manifest,
                "applied": dict(self.applied) if self.applied is not None else None,
            }
        )


def read(event: SafetyEvent) -> EventDetails:
    """The event's details as stored."""
    return EventDetails.from_json(event.details, event.policy_id)


def write(event: SafetyEvent, details: EventDetails) -> EventDetails:
    """Store ``details`` on ``event`` (the keys that changed since ``read``; others stay)."""
    event.details = j.merged(event.details, read(event).to_json(), details.to_json())
    return details


def new_details(details: EventDetails) -> dict[str, Any]:
    """The ``details`` object of an event being created."""
    return details.to_json()


def _text(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def _requirements(value: object, policy_id: UUID | None) -> Requirements | None:
    if not isinstance(value, dict):
        return None
    try:
        return Requirements.from_json(value, policy_id)
    except (ValueError, TypeError):
        return None


def _changes(value: object) -> tuple[Mapping[str, Any], ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(c for c in value if isinstance(c, dict))


def _change(value: object) -> LabChange | None:
    if not isinstance(value, dict):
        return None
    return LabChange(
        hash=j.text(value, "hash"),
        revision=j.text(value, "revision"),
        manifest_sha256=j.text(value, "manifest_sha256"),
        weakening=j.objects(value, "weakening"),
    )
