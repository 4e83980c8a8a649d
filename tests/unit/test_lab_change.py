"""A held lab change as its approver reads it (``web.lab_change``): every change the apply
would make, field by field, with what weakens safety flagged on its record."""

from __future__ import annotations

from kittylab.web.lab_change import FieldDiff, held_change

DETAILS = {
    "change": {
        "revision": "abc123def4567890",
        "weakening": [
            {"kind": "zone.hazard_lowered", "subject": "cnc-room", "change": "hazard medium → low"}
        ],
    },
    "changes": [
        {
            "action": "zone.changed",
            "details": {
                "source": "manifest",
                "name": "cnc-room",
                "fields": {"hazard_level": {"from": "medium", "to": "low"}},
            },
        },
        {
            "action": "policy.changed",
            "details": {
                "policy": "bench-power",
                "change": "created",
                "rules": {"zone": "bench", "intents": ["power_on"], "requires_presence": False},
            },
        },
        {
            "action": "user.changed",
            "details": {"username": "erin", "fields": {"email": {"changed": True}}},
        },
        {"action": "device.retired", "details": {"external_id": "old-lamp", "integration": "mqtt"}},
        {
            "action": "key.added",
            "details": {"user": "ada", "name": "laptop", "key_type": "ssh-ed25519"},
        },
    ],
    "tallies": {"zones": {"created": 0, "updated": 1, "unchanged": 4, "retired": 0}},
    "manifest": "zones:\n  - name: cnc-room\n",
}


def test_every_change_reads_field_by_field_and_weakening_is_flagged() -> None:
    change = held_change(DETAILS)
    assert change is not None and change.changes is not None
    zone, policy, person, device, key = change.changes
    assert (zone.what, zone.name, zone.verb) == ("zone", "cnc-room", "changed")
    assert zone.fields == (FieldDiff("hazard level", "medium", "low"),)
    assert zone.weakens == ("hazard medium → low",)
    assert policy.verb == "created" and not policy.weakens
    assert FieldDiff("requires presence", None, "no") in policy.fields
    assert FieldDiff("intents", None, "power_on") in policy.fields
    assert person.fields == (FieldDiff("email", "…", None),)  # changed, value not shown
    assert (device.verb, device.fields) == ("retired", ())
    assert key.name == "laptop of ada" and key.what == "approval key"
    assert change.tallies == (("zones", "1 updated"),)
    assert change.manifest_lines == 3


def test_a_change_held_before_changes_were_stored_still_shows_its_weakening() -> None:
    older = {k: v for k, v in DETAILS.items() if k != "changes"}
    change = held_change(older)
    assert change is not None and change.changes is None and len(change.weakening) == 1


def test_other_events_have_no_lab_change() -> None:
    assert held_change({"intent": "door_unlock"}) is None
