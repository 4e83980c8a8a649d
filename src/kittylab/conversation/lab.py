"""Reading the lab for the query service: the vocabulary the grammar is built from, whether
a policy governs an intent, and what a person has spent today. (What a held request
still needs is ``safety.held``'s, shared with the command route.)"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, Zone
from kittylab.cad import spending
from kittylab.conversation.understanding.vocabulary import (
    DeviceEntry,
    LabVocabulary,
    build_vocabulary,
)
from kittylab.manifest.model import LabManifest


def vocabulary_from_database(session: Session) -> LabVocabulary:
    zones = {z.id: z.name for z in session.scalars(select(Zone))}
    devices = [
        DeviceEntry(
            id=d.id,
            external_id=d.external_id,
            kind=d.kind,
            zone=zones.get(d.zone_id, ""),
            display_name=d.display_name,
            aliases=tuple(d.aliases),
            intents=frozenset(d.capabilities),
            measures=_measures(d.attributes),
        )
        for d in session.scalars(
            select(Device).where(Device.retired_at.is_(None)).order_by(Device.external_id)
        )
    ]
    policies: dict[str, set[str]] = {name: set() for name in zones.values()}
    for policy in session.scalars(select(AccessPolicy).where(AccessPolicy.retired_at.is_(None))):
        policies.setdefault(zones.get(policy.zone_id, ""), set()).update(policy.intents)
    return build_vocabulary(devices, policies)


def vocabulary_from_manifest(manifest: LabManifest) -> LabVocabulary:
    devices = [
        DeviceEntry(
            external_id=d.external_id,
            kind=d.kind,
            zone=d.zone,
            display_name=d.display_name,
            aliases=d.aliases,
            intents=frozenset(d.capabilities),
            measures=_measures(d.attributes),
        )
        for d in manifest.devices
    ]
    policies: dict[str, set[str]] = defaultdict(set)
    for zone in manifest.zones:
        policies[zone.name]
    for policy in manifest.policies:
        policies[policy.zone].update(policy.intents)
    return build_vocabulary(devices, policies)


def _measures(attributes: dict[str, Any]) -> tuple[str, ...]:
    measures = attributes.get("measures")
    return tuple(str(m) for m in measures) if isinstance(measures, list) else ()


def governed_by_policy(session: Session, device: Device, intent: str) -> bool:
    """Whether an active policy of the device's zone governs ``intent``."""
    found = session.scalar(
        select(AccessPolicy.id)
        .where(
            AccessPolicy.zone_id == device.zone_id,
            AccessPolicy.retired_at.is_(None),
            AccessPolicy.intents.contains([intent]),
        )
        .limit(1)
    )
    return found is not None


def spent_today(session: Session, user_id: Any, now: datetime) -> Decimal:
    """The person's spend today: routing tiers and online CAD calls share one budget."""
    return spending.spent_today(session, user_id, now)
