"""Transition tables for every stateful entity, and the one function that enforces them.

A status is never compared ad hoc elsewhere: callers ask ``transition`` for the next state
and get ``InvalidTransition`` when the table forbids the move.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from kittylab.domain.enums import (
    CADJobStatus,
    CommandStatus,
    FabricationStatus,
    NotificationStatus,
    SafetyStatus,
)
from kittylab.domain.errors import InvalidTransition

S = TypeVar("S", bound=Enum)

Table = Mapping[S, frozenset[S]]

COMMAND_TRANSITIONS: Table[CommandStatus] = {
    CommandStatus.PENDING: frozenset({CommandStatus.SENT, CommandStatus.FAILED}),
    CommandStatus.SENT: frozenset({CommandStatus.ACKED, CommandStatus.FAILED}),
    CommandStatus.ACKED: frozenset(),
    CommandStatus.FAILED: frozenset(),
}
"""``pending → sent → acked|failed``. A pending command may also fail without being sent
(a denied approval, an offline device): it never reached the device, so it cannot be acked."""

CAD_JOB_TRANSITIONS: Table[CADJobStatus] = {
    CADJobStatus.QUEUED: frozenset({CADJobStatus.RUNNING, CADJobStatus.FAILED}),
    CADJobStatus.RUNNING: frozenset({CADJobStatus.COMPLETED, CADJobStatus.FAILED}),
    CADJobStatus.COMPLETED: frozenset(),
    CADJobStatus.FAILED: frozenset(),
}

_ENDINGS = frozenset(
    {FabricationStatus.COMPLETED, FabricationStatus.FAILED, FabricationStatus.ABORTED}
)
FABRICATION_TRANSITIONS: Table[FabricationStatus] = {
    # Slicing or upload can fail, and an operator can abort before the print begins.
    FabricationStatus.PREPARING: frozenset(
        {FabricationStatus.PRINTING, FabricationStatus.FAILED, FabricationStatus.ABORTED}
    ),
    FabricationStatus.PRINTING: frozenset({FabricationStatus.PAUSED}) | _ENDINGS,
    # A paused job resumes, or is given up; it does not complete while paused.
    FabricationStatus.PAUSED: frozenset(
        {FabricationStatus.PRINTING, FabricationStatus.FAILED, FabricationStatus.ABORTED}
    ),
    FabricationStatus.COMPLETED: frozenset(),
    FabricationStatus.FAILED: frozenset(),
    FabricationStatus.ABORTED: frozenset(),
}

SAFETY_TRANSITIONS: Table[SafetyStatus] = {
    SafetyStatus.PENDING: frozenset({SafetyStatus.APPROVED, SafetyStatus.DENIED}),
    SafetyStatus.APPROVED: frozenset(),
    SafetyStatus.DENIED: frozenset(),
}

NOTIFICATION_TRANSITIONS: Table[NotificationStatus] = {
    NotificationStatus.QUEUED: frozenset({NotificationStatus.SENT, NotificationStatus.FAILED}),
    NotificationStatus.SENT: frozenset(),
    NotificationStatus.FAILED: frozenset(),
}


def transition(entity: str, table: Table[S], current: S, target: S) -> S:
    """Return ``target`` if ``table`` allows ``current → target``; raise otherwise."""
    if target not in table[current]:
        raise InvalidTransition(entity, current, target)
    return target


def is_final(table: Table[S], state: S) -> bool:
    return not table[state]
