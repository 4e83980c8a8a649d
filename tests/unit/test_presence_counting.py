"""Which presence counts for hazardous work: each zone's sources (issue 13)."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from kittylab.domain.enums import HazardLevel, PresenceSource, PresenceStatus
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.zones import (
    PresenceObservation,
    counts_as_present,
    presence_sources,
    validate_presence_sources,
)

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)
HIGH = presence_sources(HazardLevel.HIGH, None)


def _obs(
    user: UUID, zone: UUID, source: PresenceSource, status: PresenceStatus, age_s: float
) -> PresenceObservation:
    return PresenceObservation(user, zone, source, status, NOW - timedelta(seconds=age_s))


def test_a_bare_self_check_in_does_not_count_in_a_high_hazard_zone_by_default() -> None:
    user, zone = uuid4(), uuid4()
    checked_in = [_obs(user, zone, PresenceSource.MANUAL, PresenceStatus.PRESENT, 10)]
    assert not counts_as_present(checked_in, user, zone, NOW, TTL, HIGH)
    medium = presence_sources(HazardLevel.MEDIUM, None)
    assert counts_as_present(checked_in, user, zone, NOW, TTL, medium)


@pytest.mark.parametrize(
    "source", [PresenceSource.UNIFI, PresenceSource.CONFIRMED, PresenceSource.OVERRIDE]
)
def test_a_badge_a_confirmed_check_in_or_an_override_counts_in_a_high_hazard_zone(
    source: PresenceSource,
) -> None:
    user, zone = uuid4(), uuid4()
    seen = [_obs(user, zone, source, PresenceStatus.PRESENT, 10)]
    assert counts_as_present(seen, user, zone, NOW, TTL, HIGH)


def test_a_later_self_check_in_neither_adds_nor_takes_away_from_a_badge() -> None:
    user, zone = uuid4(), uuid4()
    observations = [
        _obs(user, zone, PresenceSource.UNIFI, PresenceStatus.PRESENT, 60),
        _obs(user, zone, PresenceSource.MANUAL, PresenceStatus.PRESENT, 10),
    ]
    assert counts_as_present(observations, user, zone, NOW, TTL, HIGH)
    # The badge's age decides, not the check-in's.
    assert not counts_as_present(observations, user, zone, NOW + TTL, TTL, HIGH)


def test_a_check_out_from_any_source_ends_counting_presence() -> None:
    user, zone = uuid4(), uuid4()
    observations = [
        _obs(user, zone, PresenceSource.UNIFI, PresenceStatus.PRESENT, 60),
        _obs(user, zone, PresenceSource.MANUAL, PresenceStatus.VACATED, 30),
        _obs(user, zone, PresenceSource.MANUAL, PresenceStatus.PRESENT, 10),
    ]
    assert not counts_as_present(observations, user, zone, NOW, TTL, HIGH)


def test_a_zone_declares_its_sources_and_the_declaration_is_checked() -> None:
    declared = presence_sources(HazardLevel.HIGH, ["unifi", "manual"])
    assert declared == frozenset({PresenceSource.UNIFI, PresenceSource.MANUAL})
    # Issue 18: a wall terminal's check-in counts in a high-hazard zone only when declared.
    assert (
        frozenset({PresenceSource.UNIFI, PresenceSource.CONFIRMED, PresenceSource.OVERRIDE}) == HIGH
    )
    assert PresenceSource.TERMINAL in presence_sources(HazardLevel.MEDIUM, None)
    assert PresenceSource.MANUAL in presence_sources(HazardLevel.LOW, None)
    assert validate_presence_sources(["unifi", "unifi", "override"]) == [
        PresenceSource.UNIFI,
        PresenceSource.OVERRIDE,
    ]
    with pytest.raises(ValidationFailed) as bad:
        validate_presence_sources(["badge"])
    assert bad.value.field == "presence_sources"
    assert "unifi" in bad.value.message
    with pytest.raises(ValidationFailed):
        validate_presence_sources([])
