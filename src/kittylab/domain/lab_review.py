"""What a change to the lab weakens: the rule that holds a manifest for a second person
(issue 13, hole 6).

``weakening_changes(current, proposed)`` compares two descriptions of the lab
(``LabFacts``: zones, devices, access policies, people and their approval keys) and lists
every change that lowers the protection of anything hazardous:

- ``zone.hazard_lowered``: a zone's hazard level goes down (a high zone's two approvers
  and presence fall away with it); ``zone.ppe_dropped``: a zone no longer requires PPE.
- ``policy.loosened``: an intent held in a zone is held less, because its policies changed
  or went: no longer held at all, fewer approvals, more roles that may approve, no
  presence (or only the requester's instead of each approver's), fewer PPE items. The
  zone's own hazard level is held fixed here, so a lowered zone is reported once, above.
- ``zone.presence_widened``: a presence source counts in a zone that did not before (a
  declared ``manual`` in a high-hazard zone: a check-in by hand, from anywhere, would
  open its approvals), at the zone's current hazard level.
- ``policy.materials_loosened``: a zone's hazardous-materials rules (its policies'
  ``pqe_checks.hazardous_materials``, combined) ask less: a rule removed, its fume
  extraction dropped, fewer PPE items.
- ``device.moved``: a device moves to a zone where one of its held intents is held less,
  or a printer to a zone whose hazardous-materials rules ask less.
- ``device.redeclared``: a change of kind, integration or capabilities turns a device with
  a held intent into one that actuates without approval: a held intent goes away while an
  intent that is not held arrives (a mains switch redeclared ``kind: light``: its
  ``light_on`` is never held), or a new unheld actuation is added beside the held ones.
- ``role.granted``: someone gains the safety or admin role (a new person, a returning one,
  or a new role).
- ``key.added``: an approval key is added to someone.

A lab with no zones, devices or policies has nothing to weaken: the first lab is not held.

How much a (zone, intent) is held (``protection``) follows the safety policy's
requirements (``kittylab.safety.policy.requirements_for``, which a unit test keeps in
step): safe intents are never held; ``door_unlock`` and ``power_on`` always are, and so is
any intent a policy of the zone lists; a high-hazard zone always needs two approvers and
presence; several policies combine to the strictest.

``change_hash`` binds a held change to what it was made against: the lab's revision (a
digest of its records), the manifest's digest and the weakening list.

Pure: no database, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kittylab.domain.actuation import IntentClass, intent_class
from kittylab.domain.command_rules import SAFE_INTENTS, is_hazardous
from kittylab.domain.enums import HazardLevel, PresenceSource, Role
from kittylab.domain.materials import MaterialRule
from kittylab.domain.zones import presence_sources

ZONE_HAZARD_LOWERED = "zone.hazard_lowered"
ZONE_PPE_DROPPED = "zone.ppe_dropped"
POLICY_LOOSENED = "policy.loosened"
DEVICE_MOVED = "device.moved"
DEVICE_REDECLARED = "device.redeclared"
ROLE_GRANTED = "role.granted"
KEY_ADDED = "key.added"
ZONE_PRESENCE_WIDENED = "zone.presence_widened"
MATERIALS_LOOSENED = "policy.materials_loosened"

# Who approves an intent no policy governs (``safety.policy.DEFAULT_APPROVER_ROLES``).
DEFAULT_APPROVER_ROLES = frozenset({Role.SAFETY, Role.ADMIN})
# Roles whose grant needs a second person: they approve hazards and change the lab.
GUARDED_ROLES = frozenset({Role.SAFETY, Role.ADMIN})
HAZARD_RANK = {HazardLevel.LOW: 0, HazardLevel.MEDIUM: 1, HazardLevel.HIGH: 2}
INITIATOR = "initiator"
APPROVER = "approver"


@dataclass(frozen=True)
class ZoneFacts:
    """``presence_sources``: the sources the zone declares; ``None`` for its hazard level's
    default (``domain.zones.presence_sources``)."""

    name: str
    hazard_level: HazardLevel
    requires_ppe: bool = False
    presence_sources: frozenset[PresenceSource] | None = None

    def counting_sources(
        self, hazard_level: HazardLevel | None = None
    ) -> frozenset[PresenceSource]:
        """The sources that count here, at ``hazard_level`` (default: the zone's own)."""
        return presence_sources(hazard_level or self.hazard_level, self.presence_sources)


@dataclass(frozen=True)
class DeviceFacts:
    integration: str
    external_id: str
    kind: str
    zone: str
    intents: frozenset[str]
    retired: bool = False


@dataclass(frozen=True)
class PolicyRule:
    """An access policy as it governs: retired policies govern nothing."""

    name: str
    zone: str
    intents: frozenset[str]
    roles: frozenset[Role]
    dual: bool = False
    presence: bool = False
    presence_of: str = INITIATOR
    ppe: frozenset[str] = frozenset()
    retired: bool = False
    materials: MaterialRule | None = None
    """The policy's ``hazardous_materials`` rule (``pqe_checks.hazardous_materials``)."""


@dataclass(frozen=True)
class PersonFacts:
    """``keys``: the key material of every key the person has (revoked ones too: a revoked
    key listed again stays revoked, so it adds nothing). ``keys_managed`` is false for a
    proposed person whose keys the manifest leaves alone."""

    username: str
    roles: frozenset[Role]
    active: bool = True
    keys: frozenset[str] = frozenset()
    keys_managed: bool = True


@dataclass(frozen=True)
class LabFacts:
    zones: tuple[ZoneFacts, ...] = ()
    devices: tuple[DeviceFacts, ...] = ()
    policies: tuple[PolicyRule, ...] = ()
    people: tuple[PersonFacts, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to weaken yet: no zone, no device (retired ones count), no policy."""
        return not (self.zones or self.devices or self.policies)

    def zone(self, name: str) -> ZoneFacts | None:
        return next((z for z in self.zones if z.name == name), None)

    def policies_in(self, zone: str) -> tuple[PolicyRule, ...]:
        return tuple(p for p in self.policies if p.zone == zone and not p.retired)


@dataclass(frozen=True)
class Weakening:
    """One weakening change: what kind, of what (a zone, ``zone/intent``, a device's
    external id, a username), and in words."""

    kind: str
    subject: str
    change: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "change": self.change}


@dataclass(frozen=True)
class Protection:
    """How much an intent is held in a zone: the requirements an approval must meet."""

    held: bool
    approvals: int = 0
    roles: frozenset[Role] = frozenset()
    presence_of: str | None = None
    ppe: frozenset[str] = field(default_factory=frozenset)


NOT_HELD = Protection(held=False)


def protection(intent: str, hazard: HazardLevel, policies: Iterable[PolicyRule]) -> Protection:
    """What ``intent`` needs in a zone of ``hazard`` governed by ``policies`` (the zone's
    active policies), as ``safety.policy.evaluate`` and ``requirements_for`` decide it."""
    active = [p for p in policies if not p.retired]
    if intent in SAFE_INTENTS or not is_hazardous(intent, {i for p in active for i in p.intents}):
        return NOT_HELD
    high = hazard is HazardLevel.HIGH
    governing = [p for p in active if intent in p.intents]
    if not governing:
        return Protection(
            held=True,
            approvals=2 if high else 1,
            roles=DEFAULT_APPROVER_ROLES,
            presence_of=INITIATOR if high else None,
        )
    roles = frozenset.intersection(*(p.roles for p in governing))
    presence: str | None = None
    if any(p.presence_of == APPROVER and p.presence for p in governing):
        presence = APPROVER
    elif high or any(p.presence for p in governing):
        presence = INITIATOR
    return Protection(
        held=True,
        approvals=2 if high or any(p.dual for p in governing) else 1,
        roles=roles,
        presence_of=presence,
        ppe=frozenset().union(*(p.ppe for p in governing)),
    )


def loosened(before: Protection, after: Protection) -> list[str]:
    """How ``after`` holds less than ``before``, in words; empty when it holds as much."""
    if not before.held:
        return []
    if not after.held:
        return ["is no longer held for approval"]
    found: list[str] = []
    if after.approvals < before.approvals:
        found.append(f"needs {after.approvals} approval(s) instead of {before.approvals}")
    if after.roles - before.roles:
        found.append(f"may also be approved by {_names(after.roles - before.roles)}")
    if before.presence_of is not None and after.presence_of is None:
        found.append("no longer needs anyone present in the zone")
    elif before.presence_of == APPROVER and after.presence_of == INITIATOR:
        found.append("needs only the requester present, no longer each approver")
    if before.ppe - after.ppe:
        found.append(f"no longer asks for PPE {_names(before.ppe - after.ppe)}")
    return found


def weakening_changes(current: LabFacts, proposed: LabFacts) -> list[Weakening]:
    """Every change from ``current`` to ``proposed`` that weakens safety (module
    docstring), zones first, then policies, devices, people and keys."""
    if current.empty:
        return []
    return [
        *_zones(current, proposed),
        *_policies(current, proposed),
        *_materials_rules(current, proposed),
        *_devices(current, proposed),
        *_roles(current, proposed),
        *_keys(current, proposed),
    ]


def _zones(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    for new in proposed.zones:
        old = current.zone(new.name)
        if old is None:
            continue
        if HAZARD_RANK[new.hazard_level] < HAZARD_RANK[old.hazard_level]:
            yield Weakening(
                ZONE_HAZARD_LOWERED,
                new.name,
                f"zone {new.name}: hazard level {old.hazard_level.value} → "
                f"{new.hazard_level.value}"
                + (
                    " (no more two approvers and presence for its hazards)"
                    if old.hazard_level is HazardLevel.HIGH
                    else ""
                ),
            )
        if old.requires_ppe and not new.requires_ppe:
            yield Weakening(ZONE_PPE_DROPPED, new.name, f"zone {new.name}: PPE no longer required")
        # At the zone's current hazard level: a lowered zone's wider default is reported
        # once, above; a declared source that did not count before is reported here.
        added = new.counting_sources(old.hazard_level) - old.counting_sources()
        if added:
            yield Weakening(
                ZONE_PRESENCE_WIDENED,
                new.name,
                f"zone {new.name}: presence now counts {_names(added)} "
                f"(before: {_names(old.counting_sources())})"
                + (
                    " — a check-in by hand can be made from anywhere"
                    if PresenceSource.MANUAL in added
                    else ""
                ),
            )


def _policies(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    """Per zone that stays, per intent its policies held: held less under the new
    policies, at the zone's current hazard level (a lowered level is reported by zone)."""
    for zone in current.zones:
        if proposed.zone(zone.name) is None:
            continue  # an undeclared zone holds no live device and no policy any more
        old_rules = current.policies_in(zone.name)
        new_rules = proposed.policies_in(zone.name)
        intents = sorted({i for p in old_rules for i in p.intents} | {"door_unlock", "power_on"})
        for intent in intents:
            reasons = loosened(
                protection(intent, zone.hazard_level, old_rules),
                protection(intent, zone.hazard_level, new_rules),
            )
            if reasons:
                yield Weakening(
                    POLICY_LOOSENED,
                    f"{zone.name}/{intent}",
                    f"{intent} in {zone.name} {'; '.join(reasons)} "
                    f"(policies {_rule_names(old_rules, intent)} → "
                    f"{_rule_names(new_rules, intent)})",
                )


def materials_loosened(before: Iterable[PolicyRule], after: Iterable[PolicyRule]) -> list[str]:
    """How a zone's hazardous-materials rules (its active policies' rules combined, as
    ``fabrication.materials.zone_rules`` applies them) ask less after than before."""
    old_fumes, old_ppe = _materials(before)
    new_fumes, new_ppe = _materials(after)
    found: list[str] = []
    if old_fumes and not new_fumes:
        found.append("no longer need the fume extraction on")
    if old_ppe - new_ppe:
        found.append(f"no longer ask for PPE {_names(old_ppe - new_ppe)}")
    return found


def _materials(rules: Iterable[PolicyRule]) -> tuple[bool, frozenset[str]]:
    found = [p.materials for p in rules if p.materials is not None and not p.retired]
    return any(m.fume_extraction for m in found), frozenset(i for m in found for i in m.ppe)


def _materials_rules(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    """Per zone that stays: its hazardous-materials rules ask less (a policy's
    ``hazardous_materials`` removed, its fume extraction dropped, fewer PPE items)."""
    for zone in current.zones:
        if proposed.zone(zone.name) is None:
            continue
        old_rules = current.policies_in(zone.name)
        new_rules = proposed.policies_in(zone.name)
        reasons = materials_loosened(old_rules, new_rules)
        if reasons:
            before = [p.name for p in old_rules if p.materials is not None]
            after = [p.name for p in new_rules if p.materials is not None]
            yield Weakening(
                MATERIALS_LOOSENED,
                zone.name,
                f"hazardous materials in {zone.name} {'; '.join(reasons)} (policies "
                f"{', '.join(before) or 'none'} → {', '.join(after) or 'none'})",
            )


# A device that takes this intent prints, so its zone's hazardous-materials rules apply.
PRINTS = "print_start"


def _devices(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    proposed_keys = {(d.integration, d.external_id) for d in proposed.devices if not d.retired}
    for new in proposed.devices:
        if new.retired:
            continue
        old = _same_device(current, new, proposed_keys)
        if old is None:
            continue
        yield from _device_change(current, proposed, old, new)


def _same_device(
    current: LabFacts, new: DeviceFacts, proposed_keys: set[tuple[str, str]]
) -> DeviceFacts | None:
    """The active device ``new`` was before: the same (integration, external id), or the
    same external id under another integration that the new lab drops (redeclared)."""
    for old in current.devices:
        if not old.retired and (old.integration, old.external_id) == (
            new.integration,
            new.external_id,
        ):
            return old
    others = [
        d
        for d in current.devices
        if not d.retired
        and d.external_id == new.external_id
        and (d.integration, d.external_id) not in proposed_keys
    ]
    return others[0] if len(others) == 1 else None


def _device_change(
    current: LabFacts, proposed: LabFacts, old: DeviceFacts, new: DeviceFacts
) -> Iterable[Weakening]:
    old_zone, new_zone = current.zone(old.zone), proposed.zone(new.zone)
    if old_zone is None or new_zone is None:
        return
    old_rules, new_rules = current.policies_in(old.zone), proposed.policies_in(new.zone)
    held = {i for i in old.intents if protection(i, old_zone.hazard_level, old_rules).held}
    if new.zone != old.zone:
        moved: list[str] = []
        for intent in sorted(held & new.intents):
            reasons = loosened(
                protection(intent, old_zone.hazard_level, old_rules),
                protection(intent, new_zone.hazard_level, new_rules),
            )
            if reasons:
                moved.append(f"its {intent} {'; '.join(reasons)}")
        if PRINTS in old.intents & new.intents:
            reasons = materials_loosened(old_rules, new_rules)
            if reasons:
                moved.append(f"its hazardous materials {'; '.join(reasons)}")
        if moved:
            yield Weakening(
                DEVICE_MOVED,
                new.external_id,
                f"{new.external_id} moves from {old.zone} ({old_zone.hazard_level.value}) "
                f"to {new.zone} ({new_zone.hazard_level.value}): {', '.join(moved)}",
            )
    if not held:
        return
    unheld = sorted(
        i
        for i in new.intents - old.intents
        if intent_class(i) is IntentClass.ACTUATE
        and not protection(i, new_zone.hazard_level, new_rules).held
    )
    if unheld:
        lost = sorted(held - new.intents)
        what = _redeclaration(old, new)
        gone = f"its held {_names(lost)} goes and " if lost else ""
        yield Weakening(
            DEVICE_REDECLARED,
            new.external_id,
            f"{new.external_id} {what}: {gone}{_names(unheld)} would run without approval",
        )


def _redeclaration(old: DeviceFacts, new: DeviceFacts) -> str:
    parts: list[str] = []
    if new.kind != old.kind:
        parts.append(f"kind {old.kind} → {new.kind}")
    if new.integration != old.integration:
        parts.append(f"integration {old.integration} → {new.integration}")
    if new.intents != old.intents:
        parts.append("capabilities changed")
    return "redeclared (" + ", ".join(parts) + ")"


def _roles(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    before = {p.username: p for p in current.people}
    for person in proposed.people:
        if not person.active:
            continue
        old = before.get(person.username)
        had = old.roles if old is not None and old.active else frozenset()
        gained = (person.roles & GUARDED_ROLES) - had
        if gained:
            yield Weakening(
                ROLE_GRANTED,
                person.username,
                f"{person.username} gains the {_names(gained)} role",
            )


def _keys(current: LabFacts, proposed: LabFacts) -> Iterable[Weakening]:
    before = {p.username: p.keys for p in current.people}
    for person in proposed.people:
        if not person.keys_managed:
            continue
        added = person.keys - before.get(person.username, frozenset())
        if added:
            count = f"{len(added)} approval keys" if len(added) > 1 else "an approval key"
            yield Weakening(KEY_ADDED, person.username, f"{person.username} gets {count}")


def _names(items: Iterable[object]) -> str:
    return ", ".join(sorted(str(getattr(i, "value", i)) for i in items))


def _rule_names(rules: Sequence[PolicyRule], intent: str) -> str:
    names = [p.name for p in rules if intent in p.intents]
    return ", ".join(names) if names else "none"


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_hash(revision: str, manifest_digest: str, weakening: Sequence[Weakening]) -> str:
    """What a held change is bound to: the lab revision it was made against, the manifest
    it applies and the weakening it was held for. Any difference is another change."""
    return digest(
        {
            "revision": revision,
            "manifest": manifest_digest,
            "weakening": [asdict(w) for w in weakening],
        }
    )
