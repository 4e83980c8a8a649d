"""The weakening rule (``domain.lab_review``): which lab changes need a second person."""

from __future__ import annotations

import itertools
from dataclasses import replace
from uuid import uuid4

import pytest

from kittylab.domain.enums import HazardLevel, PresenceSource, Role
from kittylab.domain.lab_review import (
    DEVICE_MOVED,
    DEVICE_REDECLARED,
    KEY_ADDED,
    MATERIALS_LOOSENED,
    NOT_HELD,
    POLICY_LOOSENED,
    ROLE_GRANTED,
    ZONE_HAZARD_LOWERED,
    ZONE_PPE_DROPPED,
    ZONE_PRESENCE_WIDENED,
    DeviceFacts,
    LabFacts,
    PersonFacts,
    PolicyRule,
    Weakening,
    ZoneFacts,
    change_hash,
    protection,
    weakening_changes,
)
from kittylab.domain.materials import MaterialRule
from kittylab.safety import policy

HIGH, MEDIUM, LOW = HazardLevel.HIGH, HazardLevel.MEDIUM, HazardLevel.LOW
SAFETY_ADMIN = frozenset({Role.SAFETY, Role.ADMIN})


def zone(
    name: str, hazard: HazardLevel, ppe: bool = False, sources: tuple[str, ...] | None = None
) -> ZoneFacts:
    declared = None if sources is None else frozenset(PresenceSource(s) for s in sources)
    return ZoneFacts(name, hazard, ppe, declared)


def device(
    external_id: str,
    zone_name: str,
    kind: str = "power",
    intents: tuple[str, ...] = ("power_on", "power_off"),
    integration: str = "simulated",
) -> DeviceFacts:
    return DeviceFacts(integration, external_id, kind, zone_name, frozenset(intents))


def rule(
    name: str,
    zone_name: str,
    intents: tuple[str, ...] = ("door_unlock", "power_on"),
    roles: frozenset[Role] = SAFETY_ADMIN,
    *,
    dual: bool = False,
    presence: bool = False,
    presence_of: str = "initiator",
    ppe: tuple[str, ...] = (),
    materials: MaterialRule | None = None,
) -> PolicyRule:
    return PolicyRule(
        name,
        zone_name,
        frozenset(intents),
        roles,
        dual,
        presence,
        presence_of,
        frozenset(ppe),
        materials=materials,
    )


def person(username: str, *roles: Role, keys: tuple[str, ...] = ()) -> PersonFacts:
    return PersonFacts(username, frozenset(roles), keys=frozenset(keys))


LAB = LabFacts(
    zones=(zone("print-farm", LOW), zone("cnc-room", MEDIUM, True), zone("laser-room", HIGH, True)),
    devices=(
        device("farm-lights", "print-farm", "light", ("light_on", "light_off")),
        device("prusa", "print-farm", "printer", ("print_start", "printer_heat", "print_pause")),
        device("cnc-spindle", "cnc-room"),
        device("laser-power", "laser-room"),
        device("laser-door", "laser-room", "door", ("door_lock", "door_unlock")),
    ),
    policies=(
        rule("cnc", "cnc-room", roles=frozenset({Role.SAFETY})),
        rule("laser", "laser-room", dual=True, presence=True, ppe=("glasses",)),
    ),
    people=(
        person("olivia", Role.OPERATOR),
        person("erin", Role.ENGINEER),
        person("sam", Role.SAFETY, keys=("ssh-ed25519 AAAAsam",)),
        person("ada", Role.ADMIN),
    ),
)


def changed(**edits: object) -> LabFacts:
    return replace(LAB, **edits)  # type: ignore[arg-type]


def swap(items: tuple[object, ...], name: str, new: object, attr: str) -> tuple[object, ...]:
    return tuple(new if getattr(i, attr) == name else i for i in items)


def kinds(found: list[Weakening]) -> list[tuple[str, str]]:
    return [(w.kind, w.subject) for w in found]


# -- nothing to hold ------------------------------------------------------------------------


def test_the_same_lab_weakens_nothing() -> None:
    assert weakening_changes(LAB, LAB) == []


def test_the_first_lab_on_an_empty_one_weakens_nothing() -> None:
    assert weakening_changes(LabFacts(people=(person("ada", Role.ADMIN),)), LAB) == []


def test_stricter_changes_weaken_nothing() -> None:
    stricter = changed(
        zones=swap(LAB.zones, "print-farm", zone("print-farm", HIGH, True), "name"),
        policies=(
            rule("cnc", "cnc-room", roles=frozenset({Role.SAFETY}), dual=True, ppe=("gloves",)),
            LAB.policies[1],
        ),
        people=(*LAB.people[:3], person("ada", Role.OPERATOR)),
    )
    assert weakening_changes(LAB, stricter) == []


def test_a_move_into_a_higher_zone_whose_policy_admits_more_roles_is_weakening() -> None:
    # The laser room asks more of everything but lets admins approve, the CNC room did not.
    moved = changed(
        devices=swap(LAB.devices, "cnc-spindle", device("cnc-spindle", "laser-room"), "external_id")
    )
    [found] = weakening_changes(LAB, moved)
    assert found.kind == DEVICE_MOVED
    assert found.change.endswith("its power_on may also be approved by admin")


def test_adding_devices_people_without_guarded_roles_and_removing_keys_weakens_nothing() -> None:
    more = changed(
        devices=(*LAB.devices, device("new-relay", "print-farm")),
        people=(*LAB.people[:2], replace(LAB.people[2], keys=frozenset()), LAB.people[3],
                person("otto", Role.OPERATOR)),
    )  # fmt: skip
    assert weakening_changes(LAB, more) == []


def test_retiring_a_device_or_narrowing_its_capabilities_weakens_nothing() -> None:
    narrower = changed(
        devices=(
            *swap(
                LAB.devices,
                "laser-door",
                device("laser-door", "laser-room", "door", ("door_lock",)),
                "external_id",
            ),
            replace(LAB.devices[0], retired=True),
        )
    )
    assert weakening_changes(LAB, narrower) == []


# -- zones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "weaker"),
    [
        (a, b, ["low", "medium", "high"].index(b) < ["low", "medium", "high"].index(a))
        for a, b in itertools.product(["low", "medium", "high"], repeat=2)
    ],
)
def test_a_lower_hazard_level_is_weakening_and_only_that(
    before: str, after: str, weaker: bool
) -> None:
    old = LabFacts(zones=(zone("bay", HazardLevel(before)),))
    new = LabFacts(zones=(zone("bay", HazardLevel(after)),))
    assert kinds(weakening_changes(old, new)) == ([(ZONE_HAZARD_LOWERED, "bay")] if weaker else [])


def test_a_zone_that_no_longer_requires_ppe_is_weakening() -> None:
    new = changed(zones=swap(LAB.zones, "cnc-room", zone("cnc-room", MEDIUM, False), "name"))
    assert kinds(weakening_changes(LAB, new)) == [(ZONE_PPE_DROPPED, "cnc-room")]


@pytest.mark.parametrize(
    ("before", "after", "added"),
    [
        (None, ("unifi", "confirmed", "override", "manual"), "manual"),  # high default + manual
        (("unifi",), None, "confirmed, override"),  # back to the default: more than declared
        (("unifi", "override"), ("unifi", "manual"), "manual"),  # a swap still adds one
        # Issue 18: trusting the zone's wall terminal takes a second safety person too.
        (None, ("unifi", "confirmed", "override", "terminal"), "terminal"),
    ],
)
def test_a_source_that_did_not_count_in_a_zone_is_weakening(
    before: tuple[str, ...] | None, after: tuple[str, ...] | None, added: str
) -> None:
    old = changed(
        zones=swap(LAB.zones, "laser-room", zone("laser-room", HIGH, True, before), "name")
    )
    new = changed(
        zones=swap(LAB.zones, "laser-room", zone("laser-room", HIGH, True, after), "name")
    )
    [found] = weakening_changes(old, new)
    assert (found.kind, found.subject) == (ZONE_PRESENCE_WIDENED, "laser-room")
    assert f"now counts {added}" in found.change


def test_fewer_or_the_same_presence_sources_weaken_nothing() -> None:
    for sources in [("unifi",), ("unifi", "confirmed", "override"), ("override", "confirmed")]:
        narrower = zone("laser-room", HIGH, True, sources)
        new = changed(zones=swap(LAB.zones, "laser-room", narrower, "name"))
        assert weakening_changes(LAB, new) == []
    # Declaring what a medium zone counts anyway is no change at all.
    every = zone("cnc-room", MEDIUM, True, ("unifi", "manual", "override", "confirmed"))
    assert weakening_changes(LAB, changed(zones=swap(LAB.zones, "cnc-room", every, "name"))) == []


def test_a_lowered_zone_whose_default_sources_widen_is_reported_once_as_lowered() -> None:
    lowered = changed(zones=swap(LAB.zones, "laser-room", zone("laser-room", LOW, True), "name"))
    assert kinds(weakening_changes(LAB, lowered)) == [(ZONE_HAZARD_LOWERED, "laser-room")]


# -- policies -------------------------------------------------------------------------------


def laser_rule(**edits: object) -> LabFacts:
    return changed(policies=(LAB.policies[0], replace(LAB.policies[1], **edits)))  # type: ignore[arg-type]


def test_a_removed_policy_is_weakening_for_each_intent_it_held() -> None:
    found = weakening_changes(LAB, changed(policies=(LAB.policies[1],)))
    assert kinds(found) == [
        (POLICY_LOOSENED, "cnc-room/door_unlock"),
        (POLICY_LOOSENED, "cnc-room/power_on"),
    ]
    # Without its policy, power_on falls back to safety or admin: admin may now approve.
    assert "may also be approved by admin" in found[1].change
    assert "(policies cnc → none)" in found[1].change


def test_a_removed_policy_over_a_custom_intent_makes_it_unheld() -> None:
    old = changed(policies=(*LAB.policies, rule("farm-heat", "print-farm", ("printer_heat",))))
    found = weakening_changes(old, LAB)
    assert kinds(found) == [(POLICY_LOOSENED, "print-farm/printer_heat")]
    assert "is no longer held for approval" in found[0].change


def test_a_retired_policy_governs_nothing() -> None:
    new = changed(policies=(replace(LAB.policies[0], retired=True), LAB.policies[1]))
    assert [w.subject for w in weakening_changes(LAB, new)] == [
        "cnc-room/door_unlock",
        "cnc-room/power_on",
    ]


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        ({"ppe": frozenset()}, "no longer asks for PPE glasses"),
        ({"roles": frozenset({Role.SAFETY, Role.ADMIN, Role.OPERATOR})}, "approved by operator"),
        ({"intents": frozenset({"door_unlock"})}, "power_on in laser-room"),
    ],
)
def test_a_loosened_policy_is_weakening(edits: dict[str, object], words: str) -> None:
    found = weakening_changes(LAB, laser_rule(**edits))
    assert found and all(w.kind == POLICY_LOOSENED for w in found)
    assert words in " ".join(w.change for w in found)


def test_a_high_zone_keeps_two_approvers_and_presence_whatever_its_policy_says() -> None:
    # The zone's hazard still asks for both, so dropping them from the policy changes nothing.
    assert weakening_changes(LAB, laser_rule(dual=False, presence=False)) == []


def test_fewer_approvals_and_no_presence_in_a_medium_zone_are_weakening() -> None:
    strict = changed(policies=(replace(LAB.policies[0], dual=True, presence=True), LAB.policies[1]))
    found = weakening_changes(strict, LAB)
    assert "needs 1 approval(s) instead of 2" in found[0].change
    assert "no longer needs anyone present" in found[0].change


def test_presence_of_each_approver_down_to_the_requester_is_weakening() -> None:
    strict = laser_rule(presence_of="approver")
    found = weakening_changes(strict, LAB)
    assert "needs only the requester present" in found[0].change
    assert weakening_changes(LAB, strict) == []


def test_moving_intents_between_policies_of_a_zone_with_the_same_rules_weakens_nothing() -> None:
    split = changed(
        policies=(
            rule("cnc-door", "cnc-room", ("door_unlock",), frozenset({Role.SAFETY})),
            rule("cnc-power", "cnc-room", ("power_on",), frozenset({Role.SAFETY})),
            LAB.policies[1],
        )
    )
    assert weakening_changes(LAB, split) == []


def test_a_new_policy_letting_operators_approve_a_built_in_hazard_is_weakening() -> None:
    new = changed(
        policies=(
            *LAB.policies,
            rule("farm", "print-farm", ("power_on",), frozenset({Role.OPERATOR})),
        )
    )
    found = weakening_changes(LAB, new)
    assert kinds(found) == [(POLICY_LOOSENED, "print-farm/power_on")]
    assert "may also be approved by operator" in found[0].change


# -- hazardous materials -------------------------------------------------------------------

FUMES_AND_MASK = MaterialRule(fume_extraction=True, ppe=("respirator", "gloves"))


def with_farm_materials(*rules: MaterialRule) -> LabFacts:
    return changed(
        policies=(
            *LAB.policies,
            *(rule(f"farm-{i}", "print-farm", (), materials=m) for i, m in enumerate(rules)),
        )
    )


@pytest.mark.parametrize(
    ("after", "words"),
    [
        ((), "no longer need the fume extraction on; no longer ask for PPE gloves, respirator"),
        ((MaterialRule(ppe=("respirator", "gloves")),), "no longer need the fume extraction on"),
        (
            (MaterialRule(fume_extraction=True, ppe=("respirator",)),),
            "no longer ask for PPE gloves",
        ),
    ],
)
def test_a_removed_or_loosened_hazardous_materials_rule_is_weakening(
    after: tuple[MaterialRule, ...], words: str
) -> None:
    found = weakening_changes(with_farm_materials(FUMES_AND_MASK), with_farm_materials(*after))
    assert kinds(found) == [(MATERIALS_LOOSENED, "print-farm")]
    assert f"hazardous materials in print-farm {words}" in found[0].change


def test_a_stricter_or_redistributed_materials_rule_weakens_nothing() -> None:
    before = with_farm_materials(FUMES_AND_MASK)
    stricter = with_farm_materials(replace(FUMES_AND_MASK, ppe=("respirator", "gloves", "apron")))
    split = with_farm_materials(
        MaterialRule(fume_extraction=True), MaterialRule(ppe=("respirator", "gloves"))
    )
    assert weakening_changes(before, stricter) == []
    assert weakening_changes(before, split) == []
    assert weakening_changes(LAB, before) == []  # a new rule is stricter


def test_a_printer_moved_to_a_zone_without_its_materials_rule_is_weakening() -> None:
    before = with_farm_materials(FUMES_AND_MASK)
    moved = replace(
        before,
        devices=swap(
            before.devices,
            "prusa",
            device("prusa", "cnc-room", "printer", ("print_start", "printer_heat", "print_pause")),
            "external_id",
        ),
    )
    [found] = weakening_changes(before, moved)
    assert (found.kind, found.subject) == (DEVICE_MOVED, "prusa")
    assert "hazardous materials no longer need the fume extraction on" in found.change


# -- devices --------------------------------------------------------------------------------


def test_a_device_moved_to_a_lower_hazard_zone_is_weakening() -> None:
    moved = changed(
        devices=swap(LAB.devices, "laser-power", device("laser-power", "print-farm"), "external_id")
    )
    [found] = weakening_changes(LAB, moved)
    assert found.kind == DEVICE_MOVED and found.subject == "laser-power"
    assert "from laser-room (high) to print-farm (low)" in found.change
    assert "needs 1 approval(s) instead of 2" in found.change
    assert "no longer asks for PPE glasses" in found.change


def test_a_device_moved_between_zones_of_equal_rules_weakens_nothing() -> None:
    lab = changed(zones=(*LAB.zones, zone("laser-2", HIGH, True)),
                  policies=(*LAB.policies, replace(LAB.policies[1], name="l2", zone="laser-2")))  # fmt: skip
    moved = replace(
        lab,
        devices=swap(lab.devices, "laser-power", device("laser-power", "laser-2"), "external_id"),
    )
    assert weakening_changes(lab, moved) == []


def test_a_mains_switch_redeclared_as_a_light_is_weakening() -> None:
    light = device("cnc-spindle", "cnc-room", "light", ("light_on", "light_off"))
    [found] = weakening_changes(
        LAB, changed(devices=swap(LAB.devices, "cnc-spindle", light, "external_id"))
    )
    assert found.kind == DEVICE_REDECLARED and found.subject == "cnc-spindle"
    assert "kind power → light" in found.change
    assert "its held power_on goes" in found.change
    assert "light_off, light_on would run without approval" in found.change


def test_a_switch_redeclared_under_another_integration_is_matched_by_its_id() -> None:
    other = device("cnc-spindle", "cnc-room", "light", ("light_on",), integration="homeassistant")
    new = changed(devices=(*(d for d in LAB.devices if d.external_id != "cnc-spindle"), other))
    [found] = weakening_changes(LAB, new)
    assert found.kind == DEVICE_REDECLARED
    assert "integration simulated → homeassistant" in found.change


def test_an_unheld_custom_actuation_added_beside_a_held_one_is_weakening() -> None:
    relay = device("cnc-spindle", "cnc-room", intents=("power_on", "power_off", "spin_up"))
    [found] = weakening_changes(
        LAB, changed(devices=swap(LAB.devices, "cnc-spindle", relay, "external_id"))
    )
    assert found.kind == DEVICE_REDECLARED
    assert "spin_up would run without approval" in found.change


def test_a_new_read_or_safe_direction_intent_on_a_held_device_weakens_nothing() -> None:
    relay = device("cnc-spindle", "cnc-room", intents=("power_on", "power_off", "sensor_read"))
    new = changed(devices=swap(LAB.devices, "cnc-spindle", relay, "external_id"))
    assert weakening_changes(LAB, new) == []


def test_a_kind_change_that_keeps_the_held_intents_weakens_nothing() -> None:
    relabelled = device("cnc-spindle", "cnc-room", kind="light")
    new = changed(devices=swap(LAB.devices, "cnc-spindle", relabelled, "external_id"))
    assert weakening_changes(LAB, new) == []


def test_capabilities_on_a_device_with_nothing_held_are_free() -> None:
    lights = device("farm-lights", "print-farm", "light", ("light_on", "light_off", "flash"))
    new = changed(devices=swap(LAB.devices, "farm-lights", lights, "external_id"))
    assert weakening_changes(LAB, new) == []


# -- people and keys ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.SAFETY, Role.ADMIN])
def test_granting_safety_or_admin_is_weakening(role: Role) -> None:
    new = changed(people=swap(LAB.people, "erin", person("erin", Role.ENGINEER, role), "username"))
    [found] = weakening_changes(LAB, new)
    assert (found.kind, found.subject) == (ROLE_GRANTED, "erin")
    assert f"gains the {role.value} role" in found.change


def test_a_new_safety_person_and_a_returning_admin_are_role_grants() -> None:
    old = changed(people=(*LAB.people[:3], replace(LAB.people[3], active=False)))
    new = changed(people=(*LAB.people, person("sasha", Role.SAFETY)))
    assert kinds(weakening_changes(old, new)) == [(ROLE_GRANTED, "ada"), (ROLE_GRANTED, "sasha")]


def test_operator_and_engineer_grants_are_free() -> None:
    new = changed(
        people=swap(LAB.people, "erin", person("erin", Role.ENGINEER, Role.OPERATOR), "username")
    )
    assert weakening_changes(LAB, new) == []


def test_an_approval_key_added_is_weakening_unless_it_was_known() -> None:
    added = changed(
        people=swap(
            LAB.people, "ada", person("ada", Role.ADMIN, keys=("ssh-ed25519 AAAAada",)), "username"
        )
    )
    assert kinds(weakening_changes(LAB, added)) == [(KEY_ADDED, "ada")]
    # Sam's key again (even a revoked one stays revoked) adds nothing.
    assert weakening_changes(LAB, LAB) == []
    unmanaged = replace(added.people[3], keys_managed=False)
    assert weakening_changes(LAB, changed(people=(*LAB.people[:3], unmanaged))) == []


def test_the_issue_repro_is_four_kinds_of_weakening() -> None:
    repro = changed(
        zones=swap(LAB.zones, "laser-room", zone("laser-room", LOW, True), "name"),
        devices=swap(
            swap(LAB.devices, "laser-power", device("laser-power", "print-farm"), "external_id"),
            "cnc-spindle",
            device("cnc-spindle", "cnc-room", "light", ("light_on", "light_off")),
            "external_id",
        ),
        people=swap(LAB.people, "erin", person("erin", Role.ENGINEER, Role.SAFETY), "username"),
    )
    assert {w.kind for w in weakening_changes(LAB, repro)} == {
        ZONE_HAZARD_LOWERED,
        DEVICE_MOVED,
        DEVICE_REDECLARED,
        ROLE_GRANTED,
    }


# -- the protection model follows the safety policy -------------------------------------------


def _requirements(intent: str, hazard: HazardLevel, rules: list[PolicyRule]) -> object:
    facts = [
        policy.PolicyFact(
            id=uuid4(),
            name=r.name,
            intents=r.intents,
            required_roles=r.roles,
            requires_dual_confirm=r.dual,
            requires_presence=r.presence,
            ppe=tuple(sorted(r.ppe)),
            presence_of=policy.PresenceOf(r.presence_of),
        )
        for r in rules
    ]
    request = policy.HazardRequest(
        intent,
        uuid4(),
        "d",
        uuid4(),
        "z",
        hazard,
        uuid4(),
        at=None,  # type: ignore[arg-type]
    )
    return policy.evaluate(request, facts)


RULE_SETS = [
    [],
    [rule("a", "z")],
    [rule("a", "z", ("printer_heat",), frozenset({Role.OPERATOR}), dual=True, ppe=("g",))],
    [rule("a", "z", presence=True, presence_of="approver")],
    [rule("a", "z", ("power_on",), frozenset({Role.SAFETY})), rule("b", "z", ("power_on",), SAFETY_ADMIN, presence=True, ppe=("x", "y"))],
]  # fmt: skip


@pytest.mark.parametrize("hazard", list(HazardLevel))
@pytest.mark.parametrize("rules", RULE_SETS)
@pytest.mark.parametrize("intent", ["power_on", "door_unlock", "printer_heat", "light_on", "spin"])
def test_protection_agrees_with_the_safety_policy(
    hazard: HazardLevel, rules: list[PolicyRule], intent: str
) -> None:
    decision = _requirements(intent, hazard, rules)
    held = protection(intent, hazard, rules)
    if isinstance(decision, policy.Allow):
        assert held == NOT_HELD
        return
    assert isinstance(decision, policy.NeedsApproval)
    needs = decision.requirements
    assert held.held
    assert held.approvals == needs.approvals
    assert held.roles == needs.roles
    assert held.presence_of == (needs.presence_of.value if needs.presence_of else None)
    assert held.ppe == frozenset(needs.ppe)


def test_the_change_hash_binds_revision_manifest_and_weakening() -> None:
    w = [Weakening(ROLE_GRANTED, "erin", "erin gains the safety role")]
    base = change_hash("rev1", "man1", w)
    assert base == change_hash("rev1", "man1", list(w))
    assert len({base, change_hash("rev2", "man1", w), change_hash("rev1", "man2", w),
                change_hash("rev1", "man1", [])}) == 4  # fmt: skip
