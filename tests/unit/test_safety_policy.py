"""Policy evaluation and approval rules, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from kittylab.domain.enums import HazardLevel, Role, SafetyEventType
from kittylab.safety import policy
from kittylab.safety.approval_payload import ApprovalPayload, mismatch
from kittylab.safety.lockout import LockFact

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
INITIATOR = uuid4()


def request(intent: str, level: HazardLevel = HazardLevel.MEDIUM) -> policy.HazardRequest:
    return policy.HazardRequest(
        intent=intent,
        device_id=uuid4(),
        device_name="Laser power",
        zone_id=uuid4(),
        zone_name="laser-room",
        hazard_level=level,
        initiator_id=INITIATOR,
        at=NOW,
    )


def rule(
    intents: set[str],
    roles: set[Role] | None = None,
    *,
    dual: bool = False,
    presence: bool = False,
    ppe: tuple[str, ...] = (),
    presence_of: policy.PresenceOf = policy.PresenceOf.INITIATOR,
) -> policy.PolicyFact:
    return policy.PolicyFact(
        id=uuid4(),
        name="laser-room-hazards",
        intents=frozenset(intents),
        required_roles=frozenset(roles or {Role.SAFETY}),
        requires_dual_confirm=dual,
        requires_presence=presence,
        ppe=ppe,
        presence_of=presence_of,
    )


def lock(owner: str = "Sam Safety") -> LockFact:
    return LockFact(uuid4(), uuid4(), owner, "changing the tube", NOW, "laser-power")


@pytest.mark.parametrize(
    "intent",
    ["print_pause", "print_cancel", "power_off", "door_lock", "printer_cooldown"],
)
def test_actions_that_make_the_lab_safer_are_never_held(intent: str) -> None:
    # Even listed by a policy, in a high-hazard zone, on a locked-out device.
    decision = policy.evaluate(
        request(intent, HazardLevel.HIGH), [rule({intent}, dual=True)], [lock()]
    )
    assert decision == policy.Allow()


def test_a_light_switched_on_is_never_held_but_a_lock_on_that_light_refuses_it() -> None:
    listed = [rule({"light_on"}, dual=True)]
    assert policy.evaluate(request("light_on", HazardLevel.HIGH), listed) == policy.Allow()
    locked = policy.evaluate(request("light_on", HazardLevel.HIGH), listed, [lock()])
    assert isinstance(locked, policy.Deny)
    assert "locked out by Sam Safety" in locked.reason


@pytest.mark.parametrize("intent", ["printer_heat", "print_start", "print_resume"])
def test_a_lock_refuses_heat_start_and_resume_although_no_policy_holds_them(intent: str) -> None:
    assert policy.evaluate(request(intent, HazardLevel.LOW), []) == policy.Allow()
    locked = policy.evaluate(request(intent, HazardLevel.LOW), [], [lock()])
    assert isinstance(locked, policy.Deny)


def test_unlock_and_power_on_are_hazardous_everywhere_and_fail_closed_without_a_policy() -> None:
    unlock = policy.evaluate(request("door_unlock", HazardLevel.LOW), [])
    assert isinstance(unlock, policy.NeedsApproval)
    assert unlock.event_type is SafetyEventType.UNLOCK
    assert unlock.requirements.roles == {Role.SAFETY, Role.ADMIN}
    assert unlock.requirements.approvals == 1
    power = policy.evaluate(request("power_on", HazardLevel.HIGH), [])
    assert isinstance(power, policy.NeedsApproval)
    assert power.event_type is SafetyEventType.POWER_ENABLE
    assert power.requirements.approvals == 2
    assert power.requirements.presence_of is policy.PresenceOf.INITIATOR


def test_an_intent_a_policy_lists_becomes_a_hazard_request() -> None:
    decision = policy.evaluate(request("light_set_brightness"), [rule({"light_set_brightness"})])
    assert isinstance(decision, policy.NeedsApproval)
    assert decision.event_type is SafetyEventType.HAZARD_REQUEST
    assert policy.evaluate(request("light_set_brightness"), []) == policy.Allow()


def test_high_hazard_zones_always_need_two_approvers_and_presence() -> None:
    decision = policy.evaluate(
        request("power_on", HazardLevel.HIGH),
        [rule({"power_on"}, {Role.SAFETY, Role.ADMIN}, ppe=("laser_safety_glasses",))],
    )
    assert isinstance(decision, policy.NeedsApproval)
    needs = decision.requirements
    assert needs.approvals == 2
    assert needs.presence_of is policy.PresenceOf.INITIATOR
    assert needs.ppe == ("laser_safety_glasses",)
    assert needs.roles == {Role.SAFETY, Role.ADMIN}


def test_a_lock_denies_hazards_naming_its_holder() -> None:
    decision = policy.evaluate(request("power_on"), [rule({"power_on"})], [lock("Sam Safety")])
    assert isinstance(decision, policy.Deny)
    assert "Sam Safety" in decision.reason and "changing the tube" in decision.reason


def test_two_policies_combine_to_the_strictest() -> None:
    needs = policy.requirements_for(
        HazardLevel.MEDIUM,
        [
            rule({"power_on"}, {Role.SAFETY, Role.ADMIN}, ppe=("glasses",)),
            rule({"power_on"}, {Role.SAFETY}, dual=True, presence=True, ppe=("gloves",)),
        ],
    )
    assert needs.roles == {Role.SAFETY}
    assert needs.approvals == 2
    assert needs.presence_of is policy.PresenceOf.INITIATOR
    assert needs.ppe == ("glasses", "gloves")


def test_policies_with_no_common_role_leave_nobody_able_to_approve() -> None:
    needs = policy.requirements_for(
        HazardLevel.MEDIUM, [rule({"power_on"}, {Role.SAFETY}), rule({"power_on"}, {Role.ADMIN})]
    )
    refusal = policy.approval_refusal(
        needs,
        INITIATOR,
        approver(roles={Role.SAFETY, Role.ADMIN}),
        [],
        initiator_present=True,
        zone_name="cnc-room",
    )
    assert refusal is not None and "no role may approve" in refusal


def needs_of(**kwargs: object) -> policy.Requirements:
    base: dict[str, object] = {
        "roles": frozenset({Role.SAFETY}),
        "approvals": 2,
        "presence_of": None,
        "ppe": (),
        "policy_id": None,
        "policy_name": None,
    }
    base.update(kwargs)
    return policy.Requirements(**base)  # type: ignore[arg-type]


def approver(
    user: UUID | None = None,
    roles: set[Role] | None = None,
    *,
    present: bool = True,
    ppe: set[str] | None = None,
) -> policy.Approver:
    return policy.Approver(
        user_id=user or uuid4(),
        name="Sam Safety",
        roles=frozenset(roles or {Role.SAFETY}),
        present=present,
        ppe=frozenset(ppe or set()),
    )


def refusal_for(
    needs: policy.Requirements,
    who: policy.Approver,
    earlier: list[policy.ApprovalFact] | None = None,
    *,
    initiator_present: bool = True,
) -> str | None:
    return policy.approval_refusal(
        needs, INITIATOR, who, earlier or [], initiator_present=initiator_present, zone_name="lab"
    )


def test_approval_refusals_name_their_reason() -> None:
    needs = needs_of()
    assert "their own request" in (refusal_for(needs, approver(INITIATOR)) or "")
    sam = uuid4()
    twice = refusal_for(needs, approver(sam), [policy.ApprovalFact(sam, "Sam Safety")])
    assert twice is not None and "already approved" in twice
    role = refusal_for(needs, approver(roles={Role.OPERATOR}))
    assert role is not None and "needs the safety role" in role
    ppe = refusal_for(needs_of(ppe=("welding_helmet", "gloves")), approver(ppe={"gloves"}))
    assert ppe == "PPE not confirmed: welding_helmet"
    absent = refusal_for(needs_of(presence_of=policy.PresenceOf.APPROVER), approver(present=False))
    assert absent is not None and "not checked in" in absent
    requester_absent = refusal_for(
        needs_of(presence_of=policy.PresenceOf.INITIATOR), approver(), initiator_present=False
    )
    assert requester_absent is not None and "the person who asked" in requester_absent
    assert refusal_for(needs, approver()) is None


def test_missing_lists_what_is_still_needed() -> None:
    needs = needs_of(presence_of=policy.PresenceOf.INITIATOR, ppe=("glasses",))
    first = policy.ApprovalFact(uuid4(), "Sam")
    lacking = policy.missing(needs, [first], initiator_present=False, zone_name="laser-room")
    assert lacking == [
        "1 signed approval by safety from different people, not the requester",
        "the requester checked in to laser-room",
        "PPE confirmed with the approval: glasses",
    ]
    second = policy.ApprovalFact(uuid4(), "Sasha")
    assert policy.missing(needs, [first, second], initiator_present=True, zone_name="x") == []


def test_requirements_survive_their_json_form() -> None:
    needs = needs_of(presence_of=policy.PresenceOf.APPROVER, ppe=("a", "b"))
    again = policy.Requirements.from_json(needs.to_json(), None)
    assert again.roles == needs.roles and again.approvals == 2
    assert again.presence_of is policy.PresenceOf.APPROVER and again.ppe == ("a", "b")


def test_a_zone_that_requires_ppe_asks_a_ppe_confirmation_with_every_approval() -> None:
    """The zone's ``requires_ppe`` holds whatever its policies list: an approval there
    confirms what the approver wears (``--ppe``), or it does not count."""
    zone_request = policy.HazardRequest(
        **{**vars(request("door_unlock")), "zone_requires_ppe": True}
    )
    decision = policy.evaluate(zone_request, [rule({"door_unlock"})])
    assert isinstance(decision, policy.NeedsApproval)
    needs = decision.requirements
    assert needs.zone_ppe and needs.ppe == ()
    bare = refusal_for(needs, approver())
    assert bare is not None and "PPE not confirmed: lab requires PPE" in bare
    assert refusal_for(needs, approver(ppe={"safety_glasses"})) is None
    lacking = policy.missing(needs, [], initiator_present=True, zone_name="cnc-room")
    assert "PPE confirmed with the approval (cnc-room requires PPE)" in lacking
    assert policy.Requirements.from_json(needs.to_json(), None).zone_ppe is True
    # A stored event from before the rule holds what it held then.
    old = {k: v for k, v in needs.to_json().items() if k != "zonePpe"}
    assert policy.Requirements.from_json(old, None).zone_ppe is False
    # Without the zone's flag, no policy item: no PPE to confirm.
    plain = policy.evaluate(request("door_unlock"), [rule({"door_unlock"})])
    assert isinstance(plain, policy.NeedsApproval) and not plain.requirements.zone_ppe
    assert refusal_for(plain.requirements, approver()) is None


def test_the_signed_payload_pins_event_fields_and_names_the_first_difference() -> None:
    payload = ApprovalPayload(
        event_id=uuid4(),
        intent="power_on",
        device_id=uuid4(),
        zone_id=uuid4(),
        initiator_id=INITIATOR,
        nonce="n" * 24,
        expires_at=NOW,
    )
    signed = payload.canonical()
    assert mismatch(payload, signed) is None
    other_event = ApprovalPayload(**{**payload.__dict__, "event_id": uuid4()})
    assert "made for event" in (mismatch(payload, other_event.canonical()) or "")
    tampered = signed.replace(b"power_on", b"door_unlock")
    assert "'intent'" in (mismatch(payload, tampered) or "")
    assert "not the JSON" in (mismatch(payload, b"\xff\x00") or "")
    spaced = signed.replace(b",", b", ")
    assert "canonical form" in (mismatch(payload, spaced) or "")
