"""A safety event's details, typed (issue 14): old rows load, writes change only what
changed, and the JSON keeps the shape it had."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from kittylab.adapters.db.tables import SafetyEvent
from kittylab.domain.enums import Role
from kittylab.safety import event_details
from kittylab.safety.event_details import EventDetails, LabChange
from kittylab.safety.policy import Requirements

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _event(details: dict[str, object]) -> SafetyEvent:
    return SafetyEvent(details=details, policy_id=uuid4())


def test_a_held_command_event_reads_typed_and_writes_back_unchanged() -> None:
    command = uuid4()
    stored = {
        "intent": "laser_fire",
        "requirements": {
            "roles": ["admin", "safety"],
            "approvals": 2,
            "presenceOf": "initiator",
            "ppe": ["goggles"],
            "zonePpe": True,
            "policy": "laser-two-person",
        },
        "command_id": str(command),
        "approved_at": T0.isoformat(),
        "from_an_older_version": [1, 2],
    }
    event = _event(dict(stored))
    details = event_details.read(event)
    assert details.intent == "laser_fire"
    assert details.takes_approvals
    assert details.requirements is not None
    assert details.requirements.roles == frozenset({Role.ADMIN, Role.SAFETY})
    assert details.requirements.policy_id == event.policy_id
    assert details.command_id == command
    assert details.approved_at == T0

    event_details.write(event, details)
    assert event.details == stored
    event_details.write(event, replace(details, not_sent="locked out"))
    assert event.details == {**stored, "not_sent": "locked out"}


def test_requirements_of_an_unknown_shape_read_as_none_and_stay_stored() -> None:
    stored = {"intent": "unlock", "requirements": {"roles": ["wizard"]}, "command_id": "x"}
    event = _event(dict(stored))
    details = event_details.read(event)
    assert details.requirements is None and not details.takes_approvals
    assert details.command_id is None
    event_details.write(event, replace(details, denied_by=uuid4()))
    assert {k: v for k, v in event.details.items() if k != "denied_by"} == stored


def test_overrides_and_lab_changes_keep_their_keys() -> None:
    lock, owner = uuid4(), uuid4()
    override = EventDetails(override="lock", lock_id=lock, owner_id=owner)
    assert event_details.new_details(override) == {
        "override": "lock",
        "lock_id": str(lock),
        "owner_id": str(owner),
    }
    presence = EventDetails(override="presence", presence_status="absent")
    assert event_details.new_details(presence) == {"override": "presence", "status": "absent"}

    change = LabChange("abc", "rev1", "sha", ({"kind": "policy"},))
    held = EventDetails(
        intent="lab_change:abc",
        requirements=Requirements(frozenset({Role.SAFETY}), 1, None, (), None, None),
        change=change,
        policies=(),
        manifest="zones: []",
    )
    stored = event_details.new_details(held)
    assert stored["policies"] == []
    assert stored["change"] == {
        "hash": "abc",
        "revision": "rev1",
        "manifest_sha256": "sha",
        "weakening": [{"kind": "policy"}],
    }
    assert event_details.read(_event(stored)).change == change
