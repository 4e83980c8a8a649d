"""A zone and its access policies as the safety policy reads them, remembered between
requests while this process hears every change to the lab (issue 14).

Every command is evaluated against its zone (name, hazard level) and the zone's active
access policies: two queries that return the same rows until someone applies a lab. They
are kept per zone and forgotten as soon as the lab changes anywhere
(``adapters.db.change_signal``: the ``kittylab_lab`` generation moves in this process at
its own commits and at every other process's, heard through ``NOTIFY``). A process that is
not listening (the CLI, a server whose listener is reconnecting) reads them every time:
a policy added elsewhere is never missed. Locks are never remembered: they are read on
every evaluation and again under the device's row lock when the command is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.orm import Session

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.tables import Zone
from kittylab.domain.enums import HazardLevel
from kittylab.domain.errors import NotFound
from kittylab.safety import policy


@dataclass(frozen=True)
class ZoneFacts:
    """Every zone field the policy reads (``workflow._request`` takes a ``Zone`` or this,
    so the type checker names any field added to one and not the other)."""

    id: UUID
    name: str
    hazard_level: HazardLevel
    requires_ppe: bool
    policies: tuple[policy.PolicyFact, ...]


_lock = threading.Lock()
_cached: dict[UUID, tuple[int, ZoneFacts]] = {}


PolicyReader = Callable[[Session, UUID], Iterable[policy.PolicyFact]]


def zone_facts(session: Session, zone_id: UUID, read_policies: PolicyReader) -> ZoneFacts:
    """The zone and its active policies (``read_policies(session, zone_id)``), from memory
    when that is safe (see the module doc). ``NotFound`` for an unknown zone."""
    generation = change_signal.generation(change_signal.LAB)
    listening = change_signal.listening()
    if listening:
        with _lock:
            hit = _cached.get(zone_id)
        if hit is not None and hit[0] == generation:
            return hit[1]
    zone = session.get(Zone, zone_id)
    if zone is None:
        raise NotFound("zone", zone_id)
    facts = ZoneFacts(
        zone.id,
        zone.name,
        zone.hazard_level,
        zone.requires_ppe,
        tuple(read_policies(session, zone_id)),
    )
    if listening:
        with _lock:
            if len(_cached) > 10_000:
                _cached.clear()
            _cached[zone_id] = (generation, facts)
    return facts
