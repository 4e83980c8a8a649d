"""The lab as the weakening rule sees it (``domain.lab_review.LabFacts``), read from the
records or from a manifest, and the lab's revision.

The revision is a digest of every record a manifest manages (zones, devices, people, the
keys it lists, policies), runtime state aside (a device's ``online_state`` and
``last_seen``): any change to them, through an apply, the API or the command line, gives
another revision. A held change is made against one revision and is void under any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, User, UserKey, Zone
from kittylab.domain import materials
from kittylab.domain.enums import PresenceSource
from kittylab.domain.lab_review import (
    DeviceFacts,
    LabFacts,
    PersonFacts,
    PolicyRule,
    ZoneFacts,
    digest,
)
from kittylab.manifest.model import LabManifest, key_material

_Row = TypeVar("_Row", Zone, User, AccessPolicy)


@dataclass(frozen=True)
class LabRecords:
    """Every record a manifest manages, read once (``read``): what both the weakening rule
    (``current_facts``) and the revision (``revision``) are made of, so a review reads the
    lab one time."""

    zones: list[Zone]
    """By name."""
    devices: list[Device]
    """By id."""
    policies: list[AccessPolicy]
    """By name."""
    users: list[User]
    """By username."""
    keys: list[UserKey]
    """By id."""


def read(session: Session) -> LabRecords:
    return LabRecords(
        zones=list(session.scalars(select(Zone).order_by(Zone.name))),
        devices=list(session.scalars(select(Device).order_by(Device.id))),
        policies=list(session.scalars(select(AccessPolicy).order_by(AccessPolicy.name))),
        users=list(session.scalars(select(User).order_by(User.username))),
        keys=list(session.scalars(select(UserKey).order_by(UserKey.id))),
    )


def current_facts(records: LabRecords) -> LabFacts:
    """The lab as recorded."""
    zone_names = {z.id: z.name for z in records.zones}
    keys: dict[UUID, set[str]] = {}
    for key in records.keys:
        keys.setdefault(key.user_id, set()).add(key_material(key.public_key))
    return LabFacts(
        zones=tuple(
            ZoneFacts(z.name, z.hazard_level, z.requires_ppe, _sources(z.presence_sources))
            for z in records.zones
        ),
        devices=tuple(
            DeviceFacts(
                integration=d.integration,
                external_id=d.external_id,
                kind=d.kind.value,
                zone=zone_names[d.zone_id],
                intents=frozenset(d.capabilities),
                retired=d.retired_at is not None,
            )
            for d in records.devices
        ),
        policies=tuple(
            PolicyRule(
                name=p.name,
                zone=zone_names[p.zone_id],
                intents=frozenset(p.intents),
                roles=frozenset(p.required_roles),
                dual=p.requires_dual_confirm,
                presence=p.requires_presence,
                presence_of=p.presence_of,
                ppe=frozenset(str(i) for i in (p.pqe_checks or {}).get("required", [])),
                retired=p.retired_at is not None,
                materials=materials.rule_from_checks(p.pqe_checks),
            )
            for p in records.policies
        ),
        people=tuple(
            PersonFacts(
                username=u.username,
                roles=frozenset(u.roles),
                active=u.active,
                keys=frozenset(keys.get(u.id, ())),
            )
            for u in records.users
        ),
    )


def proposed_facts(manifest: LabManifest) -> LabFacts:
    """The lab as ``manifest`` declares it. People it does not list are left out: an apply
    grants them nothing."""
    return LabFacts(
        zones=tuple(
            ZoneFacts(z.name, z.hazard_level, z.requires_ppe, _sources(z.presence_sources))
            for z in manifest.zones
        ),
        devices=tuple(
            DeviceFacts(
                integration=d.integration,
                external_id=d.external_id,
                kind=d.kind.value,
                zone=d.zone,
                intents=frozenset(d.capabilities),
            )
            for d in manifest.devices
        ),
        policies=tuple(
            PolicyRule(
                name=p.name,
                zone=p.zone,
                intents=frozenset(p.intents),
                roles=frozenset(p.required_roles),
                dual=p.requires_dual_confirm,
                presence=p.requires_presence,
                presence_of=p.presence_of,
                ppe=frozenset(str(i) for i in p.pqe_checks.get("required", [])),
                materials=materials.rule_from_checks(p.pqe_checks),
            )
            for p in manifest.policies
        ),
        people=tuple(
            PersonFacts(
                username=u.username,
                roles=frozenset(u.roles),
                keys=frozenset(key_material(k.public_key) for k in u.keys or ()),
                keys_managed=u.keys is not None,
            )
            for u in manifest.users
        ),
    )


def _sources(declared: Iterable[str] | None) -> frozenset[PresenceSource] | None:
    return None if declared is None else frozenset(PresenceSource(s) for s in declared)


def revision(records: LabRecords, manifest: LabManifest) -> str:
    """The digest of every record ``manifest`` manages, each kind by id: all zones,
    devices, people and policies, and the keys of the people whose keys it lists (the
    others' keys come and go with ``kittylab keys``, an approver's own enrolment among
    them, and no apply touches them)."""
    managed_names = {u.username for u in manifest.users if u.keys is not None}
    managed = {u.id for u in records.users if u.username in managed_names}
    digested: dict[str, list[Any]] = {
        "zones": [
            [
                z.id,
                z.name,
                z.hazard_level,
                z.requires_ppe,
                sorted(z.unifi_door_ids),
                sorted(z.presence_sources) if z.presence_sources is not None else None,
            ]
            for z in _by_id(records.zones)
        ],
        "devices": [
            [
                d.id,
                d.integration,
                d.external_id,
                d.display_name,
                d.kind,
                d.zone_id,
                d.capabilities,
                d.aliases,
                d.connection,
                d.attributes,
                d.retired_at,
            ]
            for d in records.devices
        ],
        "users": [
            [
                u.id,
                u.username,
                u.display_name,
                u.email,
                sorted(u.roles),
                u.tailscale_id,
                u.unifi_user_id,
                u.active,
                u.managed_by_manifest,
            ]
            for u in _by_id(records.users)
        ],
        "keys": [
            [k.id, k.user_id, k.name, k.public_key, k.revoked_at]
            for k in records.keys
            if k.user_id in managed
        ],
        "policies": [
            [
                p.id,
                p.name,
                p.zone_id,
                p.intents,
                sorted(p.required_roles),
                p.requires_dual_confirm,
                p.requires_presence,
                p.presence_of,
                p.pqe_checks,
                p.retired_at,
            ]
            for p in _by_id(records.policies)
        ],
    }
    return digest(digested)


def _by_id(rows: Iterable[_Row]) -> list[_Row]:
    """In id order, as PostgreSQL orders uuids (byte by byte, as Python compares them)."""
    return sorted(rows, key=lambda row: row.id)
