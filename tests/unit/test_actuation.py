"""The role × intent-class table (issue 13, hole 5): who may ask a device for what."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import pytest

from kittylab.domain.actuation import (
    INTENT_CLASSES,
    IntentClass,
    SystemActor,
    authorise,
    authorise_print,
    intent_class,
    requester_id,
)
from kittylab.domain.devices import DEFAULT_INTENTS, INTENT_CATALOGUE
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.networks import OutsideTrustedNetworks
from kittylab.domain.principal import Principal

READS = {"sensor_read", "printer_status", "camera_snapshot"}
SAFE = {"print_pause", "print_cancel", "printer_cooldown", "power_off", "door_lock"}


def _person(*roles: Role) -> Principal:
    return Principal(uuid4(), "someone", frozenset(roles))


def test_every_catalogue_intent_is_classed_explicitly() -> None:
    assert set(INTENT_CLASSES) == set(INTENT_CATALOGUE)
    for intents in DEFAULT_INTENTS.values():
        assert set(intents) <= set(INTENT_CLASSES)


def test_the_classes_are_the_documented_ones() -> None:
    assert {i for i, c in INTENT_CLASSES.items() if c is IntentClass.READ} == READS
    assert {i for i, c in INTENT_CLASSES.items() if c is IntentClass.SAFE_DIRECTION} == SAFE
    # Everything else switches equipment, lights included.
    assert intent_class("light_on") is IntentClass.ACTUATE
    assert intent_class("light_off") is IntentClass.ACTUATE


def test_an_intent_the_table_does_not_name_is_an_actuation_never_a_read() -> None:
    assert intent_class("vent_open") is IntentClass.ACTUATE
    with pytest.raises(PermissionDenied):
        authorise(_person(Role.ENGINEER), "vent_open", owns_job_on_device=True)


@pytest.mark.parametrize("intent", sorted(INTENT_CATALOGUE))
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SAFETY, Role.ADMIN])
def test_operators_safety_and_admins_may_ask_for_every_intent(role: Role, intent: str) -> None:
    authorise(_person(role), intent)


@pytest.mark.parametrize("intent", sorted(INTENT_CATALOGUE))
def test_an_engineer_reads_only_unless_the_job_is_hers(intent: str) -> None:
    engineer = _person(Role.ENGINEER)
    if intent in READS:
        authorise(engineer, intent)
        return
    with pytest.raises(PermissionDenied) as refused:
        authorise(engineer, intent)
    message = str(refused.value)
    assert "engineer" in message and "operator, safety or admin" in message
    if intent in SAFE:
        authorise(engineer, intent, owns_job_on_device=True)
    else:
        with pytest.raises(PermissionDenied):
            authorise(engineer, intent, owns_job_on_device=True)


def test_a_system_actor_acts_for_its_owner() -> None:
    owner = uuid4()
    actor = SystemActor("print tracker scene", owner)
    authorise(actor, "light_on")
    assert requester_id(actor) == owner
    person = _person(Role.OPERATOR)
    assert requester_id(person) == person.user_id


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ENGINEER, Role.SAFETY, Role.ADMIN])
def test_whoever_may_queue_prints_may_ask_for_a_print(role: Role) -> None:
    # A person's print_start is a print job (issue 16): engineers queue prints.
    authorise_print(_person(role))


def test_a_print_needs_a_printing_role_and_the_lab_network() -> None:
    with pytest.raises(PermissionDenied, match="may not queue prints"):
        authorise_print(_person())
    remote = replace(_person(Role.ADMIN), remote=True)
    with pytest.raises(OutsideTrustedNetworks):
        authorise_print(remote)
