"""Ports of safety: ``HeldChange`` (below), what an event holds other than a command.

Safety talks to the outside world only through ports it shares with other capabilities;
bootstrap passes their adapters in:

- ``kittylab.ports``: ``JobQueue`` (an approved command's dispatch, notifications) and
  ``MessageBus`` (``workflow.announce`` on ``kitty/safety/<eventId>``, ``stop``);
- ``devices.ports.DeviceDriver``: ``stop`` puts devices in their safe state;
- ``monitoring.ports.SnapshotSource`` and ``records.ports.ArtifactStore``: ``evidence``
  keeps a camera's picture with a safety event.

The pure rules (``policy``, ``lockout``, ``signatures``, ``approval_payload``,
``audit_chain``, ``webhook_signature``) need no port at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import SafetyEvent
from kittylab.domain.principal import Principal


class HeldChange(Protocol):
    """What an event holds other than a command (a lab change, ``manifest.review``):
    checked and carried out inside the approving transaction (``workflow.approve``), so it
    applies exactly when the approval commits. Both ignore events that are not theirs."""

    def void_reason(self, session: Session, event: SafetyEvent) -> str | None:
        """Why the held change can no longer be carried out (the lab changed under it)."""

    def carry_out(
        self, session: Session, event: SafetyEvent, approver: Principal, now: datetime
    ) -> None:
        """Make the change; the event has just been approved."""
