from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from kittylab.domain.devices import (
    INTENT_CATALOGUE,
    build_capabilities,
    validate_command,
    validate_external_id,
)
from kittylab.domain.enums import (
    DeviceKind,
    HazardLevel,
    MonitorEventType,
    PresenceSource,
    PresenceStatus,
    Role,
    SafetyStatus,
)
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.identity import validate_display_name, validate_optional_email, validate_roles
from kittylab.domain.records import (
    MAX_TELEMETRY_BYTES,
    check_telemetry_size,
    validate_artifact_metadata,
    validate_monitor_event,
    validate_routing_decision,
    validate_safety_resolution,
)
from kittylab.domain.zones import (
    PresenceObservation,
    effective_dual_confirm,
    is_present,
    standing_override,
    validate_required_roles,
    zones_to_end,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# --- User ------------------------------------------------------------------------------


def test_display_name_is_required() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_display_name("   ")
    assert info.value.field == "display_name"


def test_roles_must_be_a_non_empty_subset_of_the_four() -> None:
    assert validate_roles(["admin", "operator", "admin"]) == [Role.OPERATOR, Role.ADMIN]
    with pytest.raises(ValidationFailed, match="at least one"):
        validate_roles([])
    with pytest.raises(ValidationFailed, match="'janitor' is not one of"):
        validate_roles(["operator", "janitor"])


def test_email_is_optional_but_valid_when_present() -> None:
    assert validate_optional_email(None) is None
    assert validate_optional_email("") is None
    assert validate_optional_email("Ada@Lab.Example") == "Ada@lab.example"
    with pytest.raises(ValidationFailed) as info:
        validate_optional_email("not-an-email")
    assert info.value.field == "email"


# --- Zone and AccessPolicy -------------------------------------------------------------


def test_high_hazard_zone_forces_dual_confirmation() -> None:
    assert effective_dual_confirm(HazardLevel.HIGH, requested=False) is True
    assert effective_dual_confirm(HazardLevel.MEDIUM, requested=False) is False
    assert effective_dual_confirm(HazardLevel.LOW, requested=True) is True


def test_policy_required_roles_cannot_be_empty() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_required_roles([])
    assert info.value.field == "required_roles"


# --- ZonePresence ----------------------------------------------------------------------


def _obs(user, zone, status, age_s):  # type: ignore[no-untyped-def]
    return PresenceObservation(
        user, zone, PresenceSource.MANUAL, status, NOW - timedelta(seconds=age_s)
    )


def test_presence_counts_only_within_ttl() -> None:
    user, zone, ttl = uuid4(), uuid4(), timedelta(minutes=15)
    assert is_present([_obs(user, zone, PresenceStatus.PRESENT, 60)], user, zone, NOW, ttl)
    assert not is_present([_obs(user, zone, PresenceStatus.PRESENT, 901)], user, zone, NOW, ttl)


def test_a_later_check_out_cancels_presence() -> None:
    user, zone, ttl = uuid4(), uuid4(), timedelta(minutes=15)
    observations = [
        _obs(user, zone, PresenceStatus.PRESENT, 300),
        _obs(user, zone, PresenceStatus.VACATED, 10),
    ]
    assert not is_present(observations, user, zone, NOW, ttl)


def test_a_check_out_at_the_same_instant_as_a_check_in_wins() -> None:
    user, zone, ttl = uuid4(), uuid4(), timedelta(minutes=15)
    both = [
        _obs(user, zone, PresenceStatus.PRESENT, 5),
        _obs(user, zone, PresenceStatus.VACATED, 5),
    ]
    assert not is_present(both, user, zone, NOW, ttl)
    assert not is_present(list(reversed(both)), user, zone, NOW, ttl)


def test_presence_in_another_zone_does_not_count() -> None:
    user, zone, ttl = uuid4(), uuid4(), timedelta(minutes=15)
    assert not is_present([_obs(user, uuid4(), PresenceStatus.PRESENT, 1)], user, zone, NOW, ttl)


def test_entering_a_zone_ends_every_other_zone_whose_newest_observation_says_present() -> None:
    user, entering, a, b, c = uuid4(), uuid4(), uuid4(), uuid4(), uuid4()
    observations = [
        _obs(user, a, PresenceStatus.PRESENT, 5000),  # stale, still ended
        _obs(user, b, PresenceStatus.PRESENT, 60),
        _obs(user, b, PresenceStatus.VACATED, 10),  # already left b
        _obs(user, c, PresenceStatus.PRESENT, 1),
        _obs(user, entering, PresenceStatus.PRESENT, 1),
        _obs(uuid4(), b, PresenceStatus.PRESENT, 1),  # someone else
    ]
    assert zones_to_end(observations, user, entering) == sorted([a, c])


def _seen(user, zone, source, status, age_s):  # type: ignore[no-untyped-def]
    return PresenceObservation(user, zone, source, status, NOW - timedelta(seconds=age_s))


def test_a_vacated_override_stands_until_a_badge_or_another_override_sees_the_person() -> None:
    user, zone = uuid4(), uuid4()
    vacated = _seen(user, zone, PresenceSource.OVERRIDE, PresenceStatus.VACATED, 60)
    assert standing_override([], user, zone) is None
    assert standing_override([vacated], user, zone) == vacated
    manual = _seen(user, zone, PresenceSource.MANUAL, PresenceStatus.PRESENT, 1)
    assert standing_override([vacated, manual], user, zone) == vacated
    same_instant = _seen(user, zone, PresenceSource.UNIFI, PresenceStatus.PRESENT, 60)
    assert standing_override([vacated, same_instant], user, zone) == vacated
    badge = _seen(user, zone, PresenceSource.UNIFI, PresenceStatus.PRESENT, 1)
    assert standing_override([vacated, badge], user, zone) is None
    back = _seen(user, zone, PresenceSource.OVERRIDE, PresenceStatus.PRESENT, 1)
    assert standing_override([vacated, back], user, zone) is None
    elsewhere = _seen(user, uuid4(), PresenceSource.UNIFI, PresenceStatus.PRESENT, 1)
    assert standing_override([vacated, elsewhere], user, zone) == vacated


# --- Device and DeviceCommand ----------------------------------------------------------


def test_kind_defaults_give_each_intent_its_catalogue_schema() -> None:
    caps = build_capabilities(DeviceKind.LIGHT, None)
    assert set(caps) == {"light_on", "light_off", "light_set_brightness"}
    assert caps["light_set_brightness"] == INTENT_CATALOGUE["light_set_brightness"]


def test_custom_intent_needs_a_schema() -> None:
    with pytest.raises(ValidationFailed) as info:
        build_capabilities(DeviceKind.POWER, ["power_on", "laser_fire"])
    assert info.value.field == "capabilities.laser_fire"
    caps = build_capabilities(DeviceKind.POWER, {"laser_home": {"type": "object"}})
    assert caps == {"laser_home": {"type": "object"}}


def test_invalid_json_schema_in_capabilities_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="not a valid JSON Schema"):
        build_capabilities(DeviceKind.SENSOR, {"sensor_read": {"type": "banana"}})


def test_command_intent_must_be_a_device_capability() -> None:
    caps = build_capabilities(DeviceKind.LIGHT, None)
    with pytest.raises(ValidationFailed) as info:
        validate_command(caps, "door_unlock", {})
    assert info.value.field == "intent"


def test_command_payload_is_validated_against_the_intent_schema() -> None:
    caps = build_capabilities(DeviceKind.LIGHT, None)
    validate_command(caps, "light_set_brightness", {"brightness": 30})
    with pytest.raises(ValidationFailed) as info:
        validate_command(caps, "light_set_brightness", {"brightness": 130})
    assert info.value.field == "payload.brightness"
    with pytest.raises(ValidationFailed) as info:
        validate_command(caps, "light_set_brightness", {})
    assert info.value.field == "payload"


def test_external_id_cannot_hold_mqtt_wildcards() -> None:
    assert validate_external_id(" prusa-mk4 ") == "prusa-mk4"
    for bad in ("a/b", "a#", "a+b", "", "has space"):
        with pytest.raises(ValidationFailed):
            validate_external_id(bad)


# --- TelemetryEvent, RoutingDecision, CADArtifact, PrintMonitorEvent, SafetyEvent -------


def test_telemetry_over_64_kib_is_refused() -> None:
    check_telemetry_size(MAX_TELEMETRY_BYTES)
    with pytest.raises(PayloadTooLarge):
        check_telemetry_size(MAX_TELEMETRY_BYTES + 1)


def test_routing_decision_records_zero_cost_never_null() -> None:
    assert validate_routing_decision(0.9, None, 12) == Decimal(0)
    assert validate_routing_decision(0.9, 0.0021, 12) == Decimal("0.0021")


@pytest.mark.parametrize(
    ("confidence", "latency", "field"),
    [
        (1.2, 10, "confidence"),
        (-0.1, 10, "confidence"),
        (None, 10, "confidence"),
        (float("nan"), 10, "confidence"),
        (0.5, None, "latency_ms"),
    ],
)
def test_routing_decision_needs_confidence_in_range_and_latency(confidence, latency, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as info:
        validate_routing_decision(confidence, 0, latency)
    assert info.value.field == field


def test_artifact_metadata_needs_box_materials_and_parameters() -> None:
    good = {
        "bounding_box": {"x": 60, "y": 60, "z": 4},
        "material_hints": ["PETG"],
        "generation_params": {},
    }
    validate_artifact_metadata(good)
    for key in ("bounding_box", "material_hints", "generation_params"):
        with pytest.raises(ValidationFailed) as info:
            validate_artifact_metadata({k: v for k, v in good.items() if k != key})
        assert info.value.field == f"metadata.{key}"


def test_failure_monitor_events_need_a_snapshot() -> None:
    validate_monitor_event(MonitorEventType.FIRST_LAYER_OK, 0.8, None)
    with pytest.raises(ValidationFailed) as info:
        validate_monitor_event(MonitorEventType.SPAGHETTI_DETECTED, 0.9, None)
    assert info.value.field == "snapshot_key"
    with pytest.raises(ValidationFailed) as info:
        validate_monitor_event(MonitorEventType.COMPLETED, None, None)
    assert info.value.field == "confidence"


def test_approved_safety_event_needs_an_approver() -> None:
    validate_safety_resolution(SafetyStatus.DENIED, None)
    with pytest.raises(ValidationFailed) as info:
        validate_safety_resolution(SafetyStatus.APPROVED, None)
    assert info.value.field == "approved_by"
