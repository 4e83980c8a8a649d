"""The lab's vocabulary: what people call each device and zone, what each device accepts,
and which requests the access policies make hazardous.

Built from the database (``conversation.query``) or from a lab manifest (``kittylab parse
--lab``); either way the same value drives the grammar, the local model and the hazard
check, so the CLI and the API understand a request identically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from kittylab.domain.enums import DeviceKind

# Intents that are hazardous wherever the device stands, whatever the policies say: the
# lab fails closed on opening doors and energising machines.
ALWAYS_HAZARDOUS = frozenset({"door_unlock", "power_on"})

# Words that name the kind of a room rather than the room ("cnc room" → also "cnc").
_GENERIC_ZONE_WORDS = frozenset({"room", "bay", "area", "zone", "lab", "shop"})


@dataclass(frozen=True)
class DeviceEntry:
    external_id: str
    kind: DeviceKind
    zone: str
    display_name: str
    aliases: tuple[str, ...]
    intents: frozenset[str]
    id: UUID | None = None
    measures: tuple[str, ...] = ()
    """For sensors: the channels they report (``temperature``, ``air_quality`` …)."""

    @property
    def names(self) -> tuple[str, ...]:
        """Every spoken name, lower case, without duplicates: aliases, the display name and
        the external id with its separators read as spaces."""
        seen: dict[str, None] = {}
        for name in (*self.aliases, self.display_name, self.external_id.replace("-", " ")):
            spoken = spoken_form(name)
            if spoken:
                seen.setdefault(spoken, None)
        return tuple(seen)


@dataclass(frozen=True)
class ZoneEntry:
    name: str
    hazardous_intents: frozenset[str] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        spoken = spoken_form(self.name)
        words = [w for w in spoken.split() if w not in _GENERIC_ZONE_WORDS]
        short = " ".join(words)
        return (spoken,) if not short or short == spoken else (spoken, short)


@dataclass(frozen=True)
class LabVocabulary:
    devices: tuple[DeviceEntry, ...]
    zones: tuple[ZoneEntry, ...]
    _by_external_id: dict[str, DeviceEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_external_id", {d.external_id: d for d in self.devices})

    def device(self, external_id: str) -> DeviceEntry | None:
        return self._by_external_id.get(external_id)

    def zone(self, name: str) -> ZoneEntry | None:
        return next((z for z in self.zones if z.name == name), None)

    def devices_in(self, zone: str, kind: DeviceKind | None = None) -> list[DeviceEntry]:
        return [d for d in self.devices if d.zone == zone and (kind is None or d.kind == kind)]

    def of_kind(self, kind: DeviceKind) -> list[DeviceEntry]:
        return [d for d in self.devices if d.kind == kind]

    def is_hazardous(self, device: DeviceEntry, intent: str) -> bool:
        """Whether ``intent`` on ``device`` needs safety approval: always for opening
        doors and energising power, and for whatever a policy of its zone governs. An
        unknown zone counts as hazardous (fail closed)."""
        if intent in ALWAYS_HAZARDOUS:
            return True
        zone = self.zone(device.zone)
        return zone is None or intent in zone.hazardous_intents

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the grammar is built from changes."""
        data = [
            [
                d.external_id,
                d.kind.value,
                d.zone,
                d.display_name,
                list(d.aliases),
                sorted(d.intents),
                list(d.measures),
            ]
            for d in self.devices
        ] + [[z.name, sorted(z.hazardous_intents)] for z in self.zones]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def spoken_form(name: str) -> str:
    """A name as people say it: lower case, separators and punctuation as spaces."""
    cleaned = "".join(ch if ch.isalnum() or ch == "." else " " for ch in name.casefold())
    return " ".join(cleaned.split())


def build_vocabulary(
    devices: Iterable[DeviceEntry], zone_policies: Mapping[str, Iterable[str]]
) -> LabVocabulary:
    """``zone_policies`` maps every zone name to the intents its active policies govern."""
    zones = tuple(
        ZoneEntry(name=name, hazardous_intents=frozenset(intents))
        for name, intents in sorted(zone_policies.items())
    )
    return LabVocabulary(devices=tuple(devices), zones=zones)
