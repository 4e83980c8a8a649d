"""Separation of duties and machine tokens (issue 13): the pure rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.routing import iter_route_contexts

from kittylab.api.app import create_app
from kittylab.bootstrap import Container
from kittylab.domain import duties
from kittylab.domain.enums import Role
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.machine_scopes import (
    EVERY_SCOPE,
    SCOPE_ROUTES,
    MachineScope,
    parse_scopes,
    scope_refusal,
)
from kittylab.safety.enrolment import enrolment_message

SSH_KEY = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    .decode()
)


def test_every_scoped_route_exists_in_the_api() -> None:
    # A renamed route must not silently fall out of a scope (or into none).
    app = create_app(cast(Container, object()))
    declared = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path is not None and route.methods
        for method in route.methods
    }
    for routes in [EVERY_SCOPE, *SCOPE_ROUTES.values()]:
        assert routes <= declared, routes - declared


def test_a_persons_token_is_not_limited_and_a_machine_token_only_reaches_its_scope() -> None:
    assert scope_refusal((), "POST", "/api/lab/apply") is None
    monitor = [MachineScope.MONITOR.value]
    assert scope_refusal(monitor, "POST", "/api/fabrication/jobs/{job_id}/monitor-events") is None
    assert scope_refusal(monitor, "HEAD", "/api/fabrication/jobs") is None
    assert scope_refusal(monitor, "GET", "/api/me") is None
    refused = scope_refusal(monitor, "POST", "/api/telemetry")
    assert refused is not None and "scoped to monitor" in refused
    assert scope_refusal(monitor, "GET", None) is not None
    # A scope no longer known grants nothing.
    assert scope_refusal(["retired-scope"], "GET", "/api/fabrication/jobs") is not None


def test_unknown_scopes_name_the_field() -> None:
    assert parse_scopes(["telemetry", "monitor", "monitor"]) == (
        MachineScope.MONITOR,
        MachineScope.TELEMETRY,
    )
    with pytest.raises(ValidationFailed) as caught:
        parse_scopes(["root"], "--scope")
    assert caught.value.field == "--scope"


def test_privileged_roles_are_held_and_the_rest_applies_at_once() -> None:
    change = duties.split_roles([Role.OPERATOR], [Role.OPERATOR, Role.SAFETY, Role.ENGINEER])
    assert change.now == (Role.OPERATOR, Role.ENGINEER)
    assert change.held == (Role.SAFETY,)
    kept = duties.split_roles([Role.SAFETY, Role.OPERATOR], [Role.SAFETY])
    assert kept.now == (Role.SAFETY,) and kept.held == ()


def test_a_grant_needs_a_second_person_who_is_neither_asker_nor_grantee() -> None:
    asker, grantee, other = uuid4(), uuid4(), uuid4()
    assert duties.grant_confirm_refusal(asker, {Role.ADMIN}, asker, grantee) is not None
    assert duties.grant_confirm_refusal(grantee, {Role.SAFETY}, asker, grantee) is not None
    assert duties.grant_confirm_refusal(other, {Role.OPERATOR}, asker, grantee) is not None
    assert duties.grant_confirm_refusal(other, {Role.SAFETY}, asker, grantee) is None
    assert duties.grant_refuse_refusal(asker, {Role.OPERATOR}, asker) is None


def test_a_key_is_confirmed_by_safety_never_by_its_owner() -> None:
    owner, other = uuid4(), uuid4()
    assert duties.key_confirm_refusal(owner, {Role.SAFETY}, owner) is not None
    assert duties.key_confirm_refusal(other, {Role.ADMIN}, owner) is not None
    assert duties.key_confirm_refusal(other, {Role.SAFETY}, owner) is None


def test_an_enrolment_message_is_never_an_approval_payload() -> None:
    message = enrolment_message(
        challenge_id=uuid4(),
        challenge="c" * 43,
        user_id=uuid4(),
        public_key=SSH_KEY + " a comment",
        expires_at=datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
    )
    assert message.startswith(b"kittylab key enrolment v1\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(message)
    assert b"a comment" not in message  # the key's material, whatever its comment
