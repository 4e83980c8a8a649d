"""A held lab change (a ``policy_change`` safety event, ``manifest.review``) as its approver
reads it on the safety desk: what weakens safety, then every change the manifest would make,
record by record and field by field (before → after), then the manifest itself.

Pure: it reads the event's stored details (``review._hold`` keeps the trial apply's changes,
the weakening list, the tallies and the manifest), nothing else. The change is void as soon
as the lab moves (``HeldLabChanges.void_reason``), so what was stored is what an approval
would apply. Events held before the changes were stored show the weakening list and the
manifest only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# action → (what it changes, the verb, the detail key that names the record)
_ACTIONS: dict[str, tuple[str, str, str]] = {
    "zone.added": ("zone", "added", "name"),
    "zone.changed": ("zone", "changed", "name"),
    "zone.removed": ("zone", "removed", "name"),
    "device.added": ("device", "added", "external_id"),
    "device.changed": ("device", "changed", "external_id"),
    "device.retired": ("device", "retired", "external_id"),
    "user.added": ("person", "added", "username"),
    "user.changed": ("person", "changed", "username"),
    "user.deactivated": ("person", "deactivated", "username"),
    "key.added": ("approval key", "added", "user"),
    "key.revoked": ("approval key", "revoked", "user"),
    "policy.changed": ("policy", "changed", "policy"),
}

_FIELD_WORDS = {
    "hazard_level": "hazard level",
    "requires_ppe": "requires PPE",
    "unifi_door_ids": "UniFi doors",
    "presence_sources": "presence counts from",
    "display_name": "name",
    "required_roles": "approver roles",
    "requires_dual_confirm": "two approvers",
    "requires_presence": "requires presence",
    "presence_of": "whose presence",
    "pqe_checks": "PPE and materials checks",
    "payload_schemas": "payload schemas",
    "key_type": "key type",
    "tailscale_id": "Tailscale id",
    "unifi_user_id": "UniFi id",
}
# Shown once, in the row's title, not again as a field.
_NAMING = frozenset({"name", "external_id", "integration", "username", "user", "policy", "change"})


@dataclass(frozen=True)
class FieldDiff:
    name: str
    before: str | None
    """``None`` where the field did not exist before (an added record)."""
    after: str | None
    """``None`` where the value is not shown (contact details, ids: "changed")."""


@dataclass(frozen=True)
class ChangeRow:
    what: str
    name: str
    verb: str
    fields: tuple[FieldDiff, ...]
    weakens: tuple[str, ...]
    """The weakening findings about this record, in words."""


@dataclass(frozen=True)
class HeldChange:
    weakening: tuple[Mapping[str, str], ...]
    changes: tuple[ChangeRow, ...] | None
    """``None`` for a change held before the changes were stored."""
    tallies: tuple[tuple[str, str], ...]
    manifest: str
    revision: str

    @property
    def manifest_lines(self) -> int:
        return self.manifest.count("\n") + 1 if self.manifest else 0


def held_change(details: Mapping[str, Any]) -> HeldChange | None:
    """The readable change of a ``policy_change`` event's details; ``None`` for any other
    event (it has no stored ``change``)."""
    change = details.get("change")
    if not isinstance(change, Mapping):
        return None
    weakening = tuple(
        {
            "kind": str(w.get("kind", "")),
            "subject": str(w.get("subject", "")),
            "change": str(w.get("change", "")),
        }
        for w in change.get("weakening", [])
        if isinstance(w, Mapping)
    )
    stored = details.get("changes")
    rows = (
        tuple(_row(c, weakening) for c in stored if isinstance(c, Mapping))
        if isinstance(stored, list)
        else None
    )
    tallies = details.get("tallies")
    return HeldChange(
        weakening=weakening,
        changes=rows,
        tallies=_tallies(tallies) if isinstance(tallies, Mapping) else (),
        manifest=str(details.get("manifest") or ""),
        revision=str(change.get("revision") or ""),
    )


def _row(change: Mapping[str, Any], weakening: tuple[Mapping[str, str], ...]) -> ChangeRow:
    action = str(change.get("action", ""))
    details = change.get("details")
    details = details if isinstance(details, Mapping) else {}
    what, verb, key = _ACTIONS.get(action, (action.partition(".")[0] or "record", action, "name"))
    name = str(details.get(key, "?"))
    if action == "policy.changed":
        verb = str(details.get("change", "changed"))
    if what == "approval key":
        name = f"{details.get('name', '?')} of {name}"
    fields: list[FieldDiff] = []
    if isinstance(details.get("fields"), Mapping):
        for field, diff in details["fields"].items():
            fields.append(_field(field, diff))
    else:  # an added record: its values, nothing before
        rules = details.get("rules")
        values: Mapping[str, Any] = rules if isinstance(rules, Mapping) else details
        for field, value in values.items():
            if field not in _NAMING and field != "source":
                fields.append(FieldDiff(_words(field), None, text(value)))
    subject = name if what != "approval key" else str(details.get("user", ""))
    weakens = tuple(
        w["change"]
        for w in weakening
        if w["subject"] == subject or w["subject"].startswith(f"{subject}/")
    )
    return ChangeRow(what, name, verb, tuple(fields), weakens)


def _field(field: str, diff: Any) -> FieldDiff:
    if isinstance(diff, Mapping) and ("from" in diff or "to" in diff):
        return FieldDiff(_words(field), text(diff.get("from")), text(diff.get("to")))
    return FieldDiff(_words(field), "…", None)


def _words(field: str) -> str:
    return _FIELD_WORDS.get(field, field.replace("_", " "))


def text(value: Any) -> str:
    """A stored value in words: lists joined, yes/no, "none" for nothing."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) if value else "none"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(", ", ": ")) if value else "none"
    return str(value)


def _tallies(tallies: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    shown = []
    for kind, tally in tallies.items():
        if not isinstance(tally, Mapping):
            continue
        parts = [
            f"{tally[word]} {word}"
            for word in ("created", "updated", "retired")
            if isinstance(tally.get(word), int) and tally[word]
        ]
        if parts:
            shown.append((str(kind), ", ".join(parts)))
    return tuple(shown)
