"""The lab as the weakening rule sees it (``domain.lab_review.LabFacts``), read from the
records or from a manifest, and the lab's revision.

The revision is a digest of every record a manifest manages (zones, devices, people, the
keys it lists, policies), runtime state aside (a device's ``online_state`` and
``last_seen``): any change to them, through an apply, the API or the command line, gives
another revision. A held change is made against one revision and is void under any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def current_facts(session: Session) -> LabFacts:
    """The lab as recorded now."""
    zones = list(session.scalars(select(Zone).order_by(Zone.name)))
    zone_names = {z.id: z.name for z in zones}
    keys: dict[Any, set[str]] = {}
    for key in session.scalars(select(UserKey)):
        keys.setdefault(key.user_id, set()).add(key_material(key.public_key))
    return LabFacts(
        zones=tuple(
            ZoneFacts(z.name, z.hazard_level, z.requires_ppe, _sources(z.presence_sources))
            for z in zones
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
            for d in session.scalars(select(Device).order_by(Device.id))
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
            for p in session.scalars(select(AccessPolicy).order_by(AccessPolicy.name))
        ),
        people=tuple(
            PersonFacts(
                username=u.username,
                roles=frozenset(u.roles),
                active=u.active,
                keys=frozenset(keys.get(u.id, ())),
            )
            for u in session.scalars(select(User).order_by(User.username))
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


def revision(session: Session, manifest: LabManifest) -> str:
    """The digest of every record ``manifest`` manages, in a fixed order: all zones,
    devices, people and policies, and the keys of the people whose keys it lists (the
    others' keys come and go with ``kittylab keys``, an approver's own enrolment among
    them, and no apply touches them)."""
    managed = [u.username for u in manifest.users if u.keys is not None]
    records: dict[str, list[Any]] = {
        "zones": [
            [
                z.id,
                z.name,
                z.hazard_level,
                z.requires_ppe,
                sorted(z.unifi_door_ids),
                sorted(z.presence_sources) if z.presence_sources is not None else None,
            ]
            for z in session.scalars(select(Zone).order_by(Zone.id))
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
            for d in session.scalars(select(Device).order_by(Device.id))
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
            for u in session.scalars(select(User).order_by(User.id))
        ],
        "keys": [
            [k.id, k.user_id, k.name, k.public_key, k.revoked_at]
            for k in session.scalars(
                select(UserKey)
                .join(User, User.id == UserKey.user_id)
                .where(User.username.in_(managed))
                .order_by(UserKey.id)
            )
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
            for p in session.scalars(select(AccessPolicy).order_by(AccessPolicy.id))
        ],
    }
    return digest(records)
