"""What the floor page shows, read in one short transaction: zones with their hazard,
who is present, and their devices with each one's latest state and age (issue 17).

The tile's words are the API's words (``online``, ``printing``, ``locked``); the quick
actions are the device's own intents (its capabilities) that need no payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, User, Zone
from kittylab.domain.enums import DeviceKind, HazardLevel, OnlineState
from kittylab.domain.principal import Principal
from kittylab.monitoring.cameras import zone_camera_url
from kittylab.people import presence
from kittylab.safety.lockout import LockClass, lock_class
from kittylab.web.desk import LockRow, active_locks

QUICK_INTENTS: tuple[tuple[str, str], ...] = (
    ("light_on", "On"),
    ("light_off", "Off"),
    ("power_on", "On"),
    ("power_off", "Off"),
    ("door_lock", "Lock"),
    ("door_unlock", "Unlock"),
    ("print_pause", "Pause"),
    ("print_resume", "Resume"),
    ("printer_cooldown", "Cool down"),
)
"""One-tap actions, in the order they appear, with their labels: intents that take no
payload. Anything else (a print, a temperature) belongs to a page of its own."""

HAZARD_WORDS = {
    HazardLevel.LOW: "low hazard",
    HazardLevel.MEDIUM: "medium hazard",
    HazardLevel.HIGH: "high hazard",
}


@dataclass(frozen=True)
class Action:
    intent: str
    label: str
    refused_by_lock: bool = False
    """The device is locked and this adds energy: the command path refuses it."""


@dataclass(frozen=True)
class Tile:
    id: UUID
    name: str
    external_id: str
    kind: DeviceKind
    online_state: OnlineState
    state: dict[str, Any] | None
    reported_at: datetime | None
    intents: frozenset[str]
    """The device's capabilities: what it may be asked."""
    locks: tuple[LockRow, ...] = ()
    """The locks that are on it, oldest first (issue 17)."""

    @property
    def actions(self) -> tuple[Action, ...]:
        """None while offline: the command route would refuse them (409). While locked,
        those that add energy are marked refused by the lock (the command path refuses
        them anyway: safety.lockout)."""
        if self.online_state is OnlineState.OFFLINE:
            return ()
        shown = quick_actions(self.kind, self.intents, self.state)
        if not self.locks:
            return shown
        return tuple(
            Action(a.intent, a.label, lock_class(a.intent) is LockClass.ADDS_ENERGY) for a in shown
        )

    @property
    def summary(self) -> str:
        return summarize(self.kind, self.state)

    @property
    def details(self) -> list[tuple[str, str]]:
        return detail_rows(self.kind, self.state)


@dataclass
class ZoneView:
    id: UUID
    name: str
    hazard_level: HazardLevel
    requires_ppe: bool
    present: list[str] = field(default_factory=list)
    tiles: list[Tile] = field(default_factory=list)
    has_camera_url: bool = False

    @property
    def hazard_words(self) -> str:
        return HAZARD_WORDS[self.hazard_level]


def summarize(kind: DeviceKind, state: dict[str, Any] | None) -> str:
    """The one word or phrase a tile shows for ``state``, in the API's vocabulary."""
    if not state:
        return "no report yet"
    if kind in (DeviceKind.LIGHT, DeviceKind.POWER) and "on" in state:
        if not state["on"]:
            return "off"
        brightness = state.get("brightness")
        return f"on · {brightness}%" if isinstance(brightness, int) and brightness < 100 else "on"
    if kind is DeviceKind.DOOR and "locked" in state:
        return "locked" if state["locked"] else "unlocked"
    if kind is DeviceKind.PRINTER and "state" in state:
        phase = str(state["state"])
        progress = state.get("progress")
        if phase == "printing" and isinstance(progress, int | float):
            return f"printing · {round(progress * 100)}%"
        return phase
    if kind is DeviceKind.SENSOR:
        readings = _readings(state)
        return " · ".join(value for _, value in readings[:2]) or "reporting"
    if kind is DeviceKind.CAMERA:
        return "streaming" if state.get("streaming") else "idle"
    return "reporting"


def detail_rows(kind: DeviceKind, state: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A few more values beside the summary (temperatures, a file, a power draw)."""
    if not state:
        return []
    rows: list[tuple[str, str]] = []
    if kind is DeviceKind.PRINTER:
        for heater in ("nozzle", "bed"):
            value = state.get(heater)
            if isinstance(value, dict) and isinstance(value.get("actual"), int | float):
                rows.append(
                    (heater, f"{_number(value['actual'])} / {_number(value.get('target', 0))} °C")
                )
        if state.get("file"):
            rows.append(("file", str(state["file"])))
        left = state.get("seconds_left")
        if isinstance(left, int | float) and left > 0:
            rows.append(("left", _duration(left)))
    elif kind is DeviceKind.SENSOR:
        rows.extend(_readings(state))
    elif kind is DeviceKind.POWER and isinstance(state.get("watts"), int | float):
        rows.append(("power", f"{_number(state['watts'])} W"))
    return rows


def _readings(state: dict[str, Any]) -> list[tuple[str, str]]:
    """A sensor's readings (``{"temperature": {"value": 21.5, "unit": "°C"}}``), as text."""
    found = []
    for name, reading in state.items():
        if isinstance(reading, dict) and isinstance(reading.get("value"), int | float):
            found.append((name, f"{_number(reading['value'])} {reading.get('unit', '')}".strip()))
        elif isinstance(reading, int | float) and not isinstance(reading, bool):
            found.append((name, _number(reading)))
    return found


def _number(value: Any) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


PRINTER_ACTIONS_BY_PHASE = {
    "print_pause": {"printing", "heating"},
    "print_resume": {"paused"},
}
"""A printer's pause and resume are offered only in the phases they apply to (the command
route would refuse them in the others)."""


def quick_actions(
    kind: DeviceKind, intents: frozenset[str], state: dict[str, Any] | None
) -> tuple[Action, ...]:
    """The one-tap actions for a device in ``state``: its payload-free intents."""
    phase = str(state.get("state")) if kind is DeviceKind.PRINTER and state else None
    shown = []
    for intent, label in QUICK_INTENTS:
        if intent not in intents:
            continue
        applies = PRINTER_ACTIONS_BY_PHASE.get(intent) if kind is DeviceKind.PRINTER else None
        if applies is not None and phase not in applies:
            continue
        if intent == "printer_cooldown" and not _heating(state):
            continue
        shown.append(Action(intent, label))
    return tuple(shown)


def _heating(state: dict[str, Any] | None) -> bool:
    if not state:
        return False
    targets = [
        h.get("target") for h in (state.get("nozzle"), state.get("bed")) if isinstance(h, dict)
    ]
    return any(isinstance(t, int | float) and t > 0 for t in targets)


def latest_states(
    session: Session, device_ids: list[UUID]
) -> dict[UUID, tuple[dict[str, Any] | None, datetime]]:
    """Each device's newest ``state`` report (payload, when), in one query."""
    if not device_ids:
        return {}
    rows = session.execute(
        text(
            "SELECT d.id, t.payload, t.recorded_at FROM unnest(CAST(:ids AS uuid[])) AS d(id) "
            "CROSS JOIN LATERAL (SELECT payload, recorded_at FROM telemetry_events e "
            "WHERE e.device_id = d.id AND e.topic = 'state' "
            "ORDER BY e.recorded_at DESC, e.id DESC LIMIT 1) AS t"
        ),
        {"ids": [str(i) for i in device_ids]},
    ).all()
    return {
        row.id: (row.payload if isinstance(row.payload, dict) else None, row.recorded_at)
        for row in rows
    }


def read_floor(
    session: Session,
    now: datetime,
    presence_ttl: timedelta,
    *,
    simulated_cameras: str | None = None,
    viewer: Principal | None = None,
    zone_id: UUID | None = None,
) -> list[ZoneView]:
    """``viewer``: whose locks are marked their own (none without one); ``zone_id``: that
    zone alone (a wall terminal's)."""
    zone_query = select(Zone).order_by(Zone.name)
    device_query = select(Device).where(Device.retired_at.is_(None)).order_by(Device.display_name)
    if zone_id is not None:
        zone_query = zone_query.where(Zone.id == zone_id)
        device_query = device_query.where(Device.zone_id == zone_id)
    zones = {
        z.id: ZoneView(z.id, z.name, z.hazard_level, z.requires_ppe)
        for z in session.scalars(zone_query)
    }
    devices = session.scalars(device_query).all()
    latest = latest_states(session, [d.id for d in devices])
    locks = device_locks(session, viewer)
    for device in devices:
        state, reported_at = latest.get(device.id, (None, None))
        zones[device.zone_id].tiles.append(
            Tile(
                id=device.id,
                name=device.display_name,
                external_id=device.external_id,
                kind=device.kind,
                online_state=device.online_state,
                state=state,
                reported_at=reported_at,
                intents=frozenset(device.capabilities),
                locks=locks.get(device.id, ()),
            )
        )
    present = present_names(session, now, presence_ttl, list(zones))
    for zone in zones.values():
        zone.present = present[zone.id]
        zone.has_camera_url = (
            zone_camera_url(session, zone.id, simulated=simulated_cameras) is not None
        )
    return list(zones.values())


def present_names(
    session: Session, now: datetime, presence_ttl: timedelta, zone_ids: list[UUID] | None = None
) -> dict[UUID, list[str]]:
    """Who is present in each zone (every zone without ``zone_ids``), by display name:
    the floor's "present:" line."""
    if zone_ids is None:
        zone_ids = list(session.scalars(select(Zone.id)))
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    return {
        zone_id: sorted(
            names.get(u, "?")
            for u in presence.occupancy(session, zone_id, now, presence_ttl).present
        )
        for zone_id in zone_ids
    }


def device_locks(session: Session, viewer: Principal | None) -> dict[UUID, tuple[LockRow, ...]]:
    """Every lock that is on, by device (the safety desk's reading of them)."""
    nobody = Principal(user_id=UUID(int=0), username="", roles=frozenset())
    found: dict[UUID, list[LockRow]] = {}
    for row in active_locks(session, viewer or nobody):
        found.setdefault(row.device_id, []).append(row)
    return {device: tuple(rows) for device, rows in found.items()}


def read_tile(session: Session, device_id: UUID, viewer: Principal | None = None) -> Tile | None:
    device = session.get(Device, device_id)
    if device is None:
        return None
    state, reported_at = latest_states(session, [device.id]).get(device.id, (None, None))
    return Tile(
        id=device.id,
        name=device.display_name,
        external_id=device.external_id,
        kind=device.kind,
        online_state=device.online_state,
        state=state,
        reported_at=reported_at,
        intents=frozenset(device.capabilities),
        locks=device_locks(session, viewer).get(device.id, ()),
    )
