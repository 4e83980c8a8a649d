"""Zones, access policies and presence: where hazards live and who is there."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from kittylab.domain.enums import HazardLevel, PresenceSource, PresenceStatus, Role
from kittylab.domain.errors import ValidationFailed


def requires_dual_confirmation(hazard_level: HazardLevel) -> bool:
    return hazard_level is HazardLevel.HIGH


def effective_dual_confirm(hazard_level: HazardLevel, requested: bool) -> bool:
    """A policy in a high-hazard zone always needs two approvers, whatever it says."""
    return requested or requires_dual_confirmation(hazard_level)


def validate_required_roles(values: Iterable[str | Role]) -> list[Role]:
    roles: list[Role] = []
    for value in values:
        try:
            role = Role(value)
        except ValueError:
            raise ValidationFailed("required_roles", f"{value!r} is not a role") from None
        if role not in roles:
            roles.append(role)
    if not roles:
        raise ValidationFailed("required_roles", "cannot be empty")
    return roles


# Which sources count as presence for hazardous work when a zone declares none (issue 13).
# A self check-in can be made from anywhere, so in a high-hazard zone it proves nothing on
# its own: a badge at the door, a check-in confirmed by someone already there, or the
# safety role's override do. A wall terminal's check-in (issue 18) is as good as the
# tablet staying on its wall, which the admin who paired it vouches for alone: a
# high-hazard zone trusts it only when it declares so, and declaring it is a change a
# second safety person approves (``domain.lab_review``: zone.presence_widened).
_EVERY_SOURCE = frozenset(PresenceSource)
DEFAULT_PRESENCE_SOURCES: Mapping[HazardLevel, frozenset[PresenceSource]] = {
    HazardLevel.LOW: _EVERY_SOURCE,
    HazardLevel.MEDIUM: _EVERY_SOURCE,
    HazardLevel.HIGH: _EVERY_SOURCE - {PresenceSource.MANUAL, PresenceSource.TERMINAL},
}


def validate_presence_sources(values: Iterable[str | PresenceSource]) -> list[PresenceSource]:
    """The sources a zone declares, without repeats; at least one."""
    sources: list[PresenceSource] = []
    for value in values:
        try:
            source = PresenceSource(value)
        except ValueError:
            known = ", ".join(s.value for s in PresenceSource)
            raise ValidationFailed(
                "presence_sources", f"{value!r} is not a presence source ({known})"
            ) from None
        if source not in sources:
            sources.append(source)
    if not sources:
        raise ValidationFailed(
            "presence_sources", "cannot be empty: leave it out for the hazard level's default"
        )
    return sources


def presence_sources(
    hazard_level: HazardLevel, declared: Iterable[str | PresenceSource] | None
) -> frozenset[PresenceSource]:
    """The sources that count in a zone: what it declares, else its hazard level's default."""
    if declared is None:
        return DEFAULT_PRESENCE_SOURCES[hazard_level]
    return frozenset(validate_presence_sources(declared))


@dataclass(frozen=True)
class PresenceObservation:
    user_id: UUID
    zone_id: UUID
    source: PresenceSource
    status: PresenceStatus
    observed_at: datetime


def _newest(
    observations: Iterable[PresenceObservation], user_id: UUID, zone_id: UUID
) -> PresenceObservation | None:
    """The observation that decides, at the same instant a non-``present`` one wins."""
    newest: PresenceObservation | None = None
    for obs in observations:
        if obs.user_id != user_id or obs.zone_id != zone_id:
            continue
        if (
            newest is None
            or obs.observed_at > newest.observed_at
            or (obs.observed_at == newest.observed_at and obs.status is not PresenceStatus.PRESENT)
        ):
            newest = obs
    return newest


def zones_to_end(
    observations: Iterable[PresenceObservation], user_id: UUID, entering: UUID
) -> list[UUID]:
    """The zones other than ``entering`` whose newest observation of ``user_id`` says
    ``present``: a person is in one zone at a time, so entering one ends these (however
    old: ending a stale check-in is harmless, leaving it would not be)."""
    seen = list(observations)
    zones = {o.zone_id for o in seen if o.user_id == user_id and o.zone_id != entering}
    ended = []
    for zone in zones:
        newest = _newest(seen, user_id, zone)
        if newest is not None and newest.status is PresenceStatus.PRESENT:
            ended.append(zone)
    return sorted(ended)


# The sources that count to see a person again after a safety override: a badge at the
# door, or another override. A bare self check-in does not.
SEEN_AGAIN_BY = frozenset({PresenceSource.UNIFI, PresenceSource.OVERRIDE})


def standing_override(
    observations: Iterable[PresenceObservation], user_id: UUID, zone_id: UUID
) -> PresenceObservation | None:
    """The override that says ``user_id`` is not in ``zone_id`` and still stands, if any.

    An override stands until the person is seen again by a source that counts
    (``SEEN_AGAIN_BY``: a ``present`` badge later than it, or a newer override). At the
    same instant the override wins (fail closed). Its age does not matter: a safety lead
    stated a fact, which a manual check-in or check-out cannot undo."""
    mine = [o for o in observations if o.user_id == user_id and o.zone_id == zone_id]
    overrides = [o for o in mine if o.source is PresenceSource.OVERRIDE]
    if not overrides:
        return None
    last = max(overrides, key=lambda o: (o.observed_at, o.status is not PresenceStatus.PRESENT))
    if last.status is PresenceStatus.PRESENT:
        return None
    seen = any(
        o.source in SEEN_AGAIN_BY
        and o.status is PresenceStatus.PRESENT
        and o.observed_at > last.observed_at
        for o in mine
    )
    return None if seen else last


def is_present(
    observations: Iterable[PresenceObservation],
    user_id: UUID,
    zone_id: UUID,
    now: datetime,
    ttl: timedelta,
) -> bool:
    """True when the newest observation of this user in this zone says ``present`` and is
    younger than ``ttl``. A later ``vacated`` or ``unknown`` cancels an earlier check-in;
    at the same instant, it wins too (fail closed: presence unlocks hazardous approvals)."""
    newest = _newest(observations, user_id, zone_id)
    if newest is None or newest.status is not PresenceStatus.PRESENT:
        return False
    age = now - newest.observed_at
    # An observation from the future (clock skew) is not trusted beyond a small margin.
    return timedelta(seconds=-5) <= age <= ttl


def counts_as_present(
    observations: Iterable[PresenceObservation],
    user_id: UUID,
    zone_id: UUID,
    now: datetime,
    ttl: timedelta,
    sources: frozenset[PresenceSource],
) -> bool:
    """``is_present`` over the observations that count in the zone: a ``present`` one only
    from ``sources`` (a self check-in where it does not count neither makes nor keeps
    anyone present), any other status from every source (a check-out always ends
    presence: fail closed)."""
    counting = [
        o for o in observations if o.status is not PresenceStatus.PRESENT or o.source in sources
    ]
    return is_present(counting, user_id, zone_id, now, ttl)
