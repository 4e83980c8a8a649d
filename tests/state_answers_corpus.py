"""The held-out state-question corpus (tests/data/conversation/state_questions.jsonl) and
the demo lab state it is scored against: what the benchmark (the whole corpus) and the
CI sample (tests/integration/test_state_answers_corpus.py) share.

``seed`` writes a known lab state (readings, locks, presence, print jobs, a held unlock,
a monitoring snapshot) into a database with the demo lab applied; ``score`` judges one
answer: the right kind, the right device or zone, and every expected value present in the
reply as the seeded truth says it (``TRUTH``, written by hand, not computed by the code
under test).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import select, update

from kittylab.adapters.db.tables import Device, FabricationJob, PrintMonitorEvent, User, Zone
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import telemetry
from kittylab.domain.enums import (
    FabricationStatus,
    MonitorEventType,
    OnlineState,
    PresenceStatus,
)
from kittylab.people import presence
from kittylab.safety import locks

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "conversation" / "state_questions.jsonl"
ASKER = "sam"
"""Every question is asked by Sam (safety): the approvals wait for him."""

STATES: dict[str, dict[str, Any]] = {
    "farm-climate": {"temperature": {"value": 22.4, "unit": "°C"},
                     "humidity": {"value": 45.0, "unit": "%"}},
    "fume-sensor": {"air_quality": {"value": 12.3, "unit": "µg/m³ PM2.5"}},
    "prusa-mk4": {"state": "printing", "file": "gear.gcode", "progress": 0.37,
                  "seconds_left": 1260, "nozzle": {"actual": 214.6, "target": 215},
                  "bed": {"actual": 60.2, "target": 60}},
    "voron-24": {"state": "heating", "file": "duct.gcode", "progress": 0.0,
                 "seconds_left": 5400, "nozzle": {"actual": 180.4, "target": 250},
                 "bed": {"actual": 88.0, "target": 100},
                 "chamber": {"actual": 41.0, "target": 0}},
    "bambu-x1c": {"state": "paused", "file": "hinge.3mf", "progress": 0.62,
                  "seconds_left": 840, "nozzle": {"actual": 219.0, "target": 220},
                  "bed": {"actual": 55.0, "target": 55}},
    "cnc-door": {"locked": True},
    "laser-door": {"locked": False},
    "welding-door": {"locked": True},
    "farm-lights": {"on": True, "brightness": 30},
    "bench-lights": {"on": True, "brightness": 75},
    "cnc-lights": {"on": False, "brightness": 0},
    "welding-lights": {"on": False, "brightness": 0},
    "farm-cam": {"streaming": True, "snapshots_taken": 4},
    "laser-cam": {"streaming": True, "snapshots_taken": 0},
    "welding-cam": {"streaming": True, "snapshots_taken": 0},
}  # fmt: skip

LOCKS = [("cnc-spindle", "erin", "changing the bit"), ("welder-power", "olivia", "new wire"),
         ("prusa-mk4", "erin", "nozzle swap next"), ("voron-24", "sam", "belt check")]  # fmt: skip
PRESENT = [("sam", "cnc-room"), ("olivia", "welding-bay"), ("erin", "print-farm")]
# (printer, owner, file, status, stage, reason, hours ago)
JOBS = [
    ("voron-24", "erin", "bracket.gcode", FabricationStatus.PREPARING, "queued", None, 1),
    ("bambu-x1c", "olivia", "clip.gcode", FabricationStatus.PREPARING, "queued", None, 1),
    ("prusa-mk4", "sam", "bracket-v2.gcode", FabricationStatus.PREPARING, "queued", None, 1),
    ("voron-24", "erin", "panel.gcode", FabricationStatus.COMPLETED, None, None, 3),
    ("bambu-x1c", "olivia", "tray.gcode", FabricationStatus.FAILED, None, "spaghetti", 4),
    ("prusa-mk4", "sam", "knob.gcode", FabricationStatus.ABORTED, None, "wrong filament", 5),
]

# What the replies must say, by hand: per device and expected value; "holder" and the
# like for what is not a device's own state.
TRUTH: dict[str, dict[str, list[str]]] = {
    "farm-climate": {"temperature": ["22.4 °C"], "humidity": ["45 % RH"]},
    "fume-sensor": {"air_quality": ["12.3 µg/m³"]},
    "prusa-mk4": {"state": ["printing"], "nozzle_temperature": ["nozzle 215 °C"],
                  "bed_temperature": ["bed 60 °C"], "progress": ["37 %"],
                  "time_left": ["21 min"], "file": ["gear.gcode"],
                  "holder": ["Erin Engineer"], "jobs": ["bracket-v2.gcode"],
                  "outcome": ["cancelled"], "last_file": ["knob.gcode"]},
    "voron-24": {"state": ["heating"], "nozzle_temperature": ["nozzle 180 °C"],
                 "bed_temperature": ["bed 88 °C"], "chamber_temperature": ["chamber 41 °C"],
                 "progress": ["0 %"], "time_left": ["1 h 30 min"], "file": ["duct.gcode"],
                 "holder": ["Sam Safety"], "jobs": ["bracket.gcode"],
                 "outcome": ["panel.gcode", "completed"], "last_file": ["panel.gcode"]},
    "bambu-x1c": {"state": ["paused"], "nozzle_temperature": ["nozzle 219 °C"],
                  "bed_temperature": ["bed 55 °C"], "progress": ["62 %"],
                  "time_left": ["14 min"], "file": ["hinge.3mf"], "jobs": ["clip.gcode"],
                  "outcome": ["failed"], "last_file": ["tray.gcode"]},
    "cnc-door": {"locked": ["is locked"]},
    "laser-door": {"locked": ["is unlocked"], "approvals": ["door unlock on the laser door"]},
    "welding-door": {"locked": ["is locked"]},
    "farm-lights": {"on": ["is on", "are on"], "brightness": ["30 %"]},
    "bench-lights": {"on": ["is on", "are on"], "brightness": ["75 %"]},
    "cnc-lights": {"on": ["is off", "are off"]},
    "welding-lights": {"on": ["is off", "are off"]},
    "cnc-spindle": {"holder": ["Erin Engineer"]},
    "welder-power": {"holder": ["Olivia Operator"]},
    "laser-power": {"holder": ["No locks"]},
    "farm-cam": {"snapshot": ["/api/fabrication/jobs/"]},
    "laser-cam": {"snapshot": ["no snapshot"]},
    "welding-cam": {"snapshot": ["no snapshot"]},
}  # fmt: skip
ZONE_TRUTH: dict[str, dict[str, list[str]]] = {
    "welding-bay": {"people": ["Olivia Operator"], "approvals": ["Nothing is waiting"]},
    "laser-room": {"people": ["Nobody"]},
    "cnc-room": {"people": ["Sam Safety"], "holder": ["Erin Engineer"],
                 "devices": ["cnc spindle"]},
    "electronics-bench": {"people": ["Nobody"]},
    "print-farm": {"people": ["Erin Engineer"], "jobs": ["bracket.gcode", "clip.gcode"]},
}  # fmt: skip
LAB_TRUTH: dict[str, list[str]] = {
    "people": ["Sam Safety", "Olivia Operator", "Erin Engineer"],
    "jobs": ["bracket.gcode", "clip.gcode", "bracket-v2.gcode"],
    "approvals": ["door unlock on the laser door", "waiting for your approval"],
    "holder": ["Erin Engineer", "Olivia Operator", "Sam Safety"],
    "devices": ["cnc spindle", "welder", "Prusa", "Voron"],
}  # fmt: skip
# Questions about a person, or the asker: what their answer must say.
PERSON_TRUTH: dict[str, dict[str, list[str]]] = {
    "erin": {"devices": ["cnc spindle", "Prusa"], "zone": ["print farm"],
             "outcome": ["panel.gcode", "completed"]},
    "sam": {"devices": ["Voron"], "jobs": ["bracket-v2.gcode"], "outcome": ["cancelled"],
            "people": ["Sam Safety"]},
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    text: str
    kind: str
    device: str | None
    zone: str | None
    expects: tuple[str, ...]


def load() -> list[Entry]:
    out = []
    for line in CORPUS.read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            out.append(Entry(e["text"], e["kind"], e["device"], e["zone"], tuple(e["expects"])))
    return out


def seed(session: UnitOfWork, now: datetime) -> dict[str, UUID]:
    """The known state; returns the user ids by username. The demo lab (with its people)
    must be applied already."""
    session.execute(update(Device).values(online_state=OnlineState.ONLINE))
    telemetry.store_batch(
        session,
        [
            telemetry.IncomingEvent(None, external_id, "state", state, now - timedelta(seconds=5))
            for external_id, state in STATES.items()
        ],
        now,
    )
    users = {u.username: u.id for u in session.scalars(select(User))}
    devices = {d.external_id: d.id for d in session.scalars(select(Device))}
    zones = {z.name: z.id for z in session.scalars(select(Zone))}
    for external_id, owner, reason in LOCKS:
        locks.place(session, devices[external_id], users[owner], reason, now)
    for person, zone in PRESENT:
        presence.record_manual(
            session, zone_id=zones[zone], user_id=users[person],
            status=PresenceStatus.PRESENT, now=now,
        )  # fmt: skip
    first_farm_job: UUID | None = None
    for printer, owner, file, status, stage, reason, hours in JOBS:
        at = now - timedelta(hours=hours)
        details: dict[str, Any] = {"source_name": file}
        if stage:
            details["stage"] = stage
        if reason:
            details["reason"] = reason
        job = FabricationJob(
            device_id=devices[printer], gcode_path=f"jobs/{file}", status=status,
            details=details, requested_by=users[owner], created_at=at,
            completed_at=None if stage else at + timedelta(minutes=30),
        )  # fmt: skip
        session.add(job)
        session.flush()
        first_farm_job = first_farm_job or job.id
    assert first_farm_job is not None
    session.add(
        PrintMonitorEvent(
            fabrication_job_id=first_farm_job, event_type=MonitorEventType.FIRST_LAYER_OK,
            confidence=0.9, snapshot_key=f"snapshots/{first_farm_job}/layer1.jpg",
            occurred_at=now - timedelta(minutes=20),
        )
    )  # fmt: skip
    return users


def _scope_devices(entry: Entry, all_devices: dict[str, tuple[str, str]]) -> list[str]:
    """The devices a zone-wide or lab-wide question covers, by the kind it asks about."""
    kind_of = {"printer_status": "printer", "door_state": "door", "light_state": "light",
               "sensor_reading": "sensor", "camera": "camera"}  # fmt: skip
    wanted = kind_of.get(entry.kind)
    if wanted is None:
        return []
    return [
        external_id
        for external_id, (kind, zone) in all_devices.items()
        if kind == wanted and (entry.zone is None or zone == entry.zone)
    ]


PERSON_WORDS = {"erin": "erin", "sam": "sam"}


def must_say(entry: Entry, all_devices: dict[str, tuple[str, str]]) -> list[list[str]]:
    """For each expected value: the strings of which the reply must contain one."""
    text = entry.text.casefold()
    person = next((p for p in PERSON_WORDS if p in text.split() or f"{p}'s" in text), None)
    mine = any(w in text.replace("?", " ").split() for w in ("i", "my", "me"))
    out: list[list[str]] = []
    for expected in entry.expects:
        if person is not None and expected in PERSON_TRUTH[person] and entry.kind != "presence":
            out.append(PERSON_TRUTH[person][expected])
            continue
        if person is not None and entry.kind == "presence":
            out.append(
                PERSON_TRUTH[person].get(
                    expected, ZONE_TRUTH.get(entry.zone or "", {}).get(expected, [])
                )
            )
            continue
        if (
            mine
            and expected in PERSON_TRUTH[ASKER]
            and entry.kind in ("lock_holders", "last_job", "print_queue")
        ):
            out.append(PERSON_TRUTH[ASKER][expected])
            continue
        if entry.device is not None:
            key = "last_file" if entry.kind == "last_job" and expected == "file" else expected
            out.append(TRUTH[entry.device][key])
            continue
        devices = _scope_devices(entry, all_devices)
        if devices:
            # Every device of the scope with its value (each must be named and valued).
            for d in devices:
                values = TRUTH.get(d, {}).get(expected)
                if values:
                    out.append(values)
            continue
        if entry.zone is not None and expected in ZONE_TRUTH.get(entry.zone, {}):
            out.append(ZONE_TRUTH[entry.zone][expected])
            continue
        if expected == "outcome":
            out.append(["completed", "failed", "cancelled"])  # the lab's newest finished job
            continue
        if expected == "approvals" and entry.zone is None:
            out.append(LAB_TRUTH["approvals"][:1])
            continue
        out.append(LAB_TRUTH.get(expected, []))
    return out


@dataclass
class Score:
    text: str
    kind_ok: bool
    target_ok: bool
    missing: list[list[str]]
    reply: str

    @property
    def right(self) -> bool:
        return self.kind_ok and self.target_ok and not self.missing


def score(
    entry: Entry,
    reply: str,
    answer: dict[str, Any] | None,
    all_devices: dict[str, tuple[str, str]],
) -> Score:
    """``answer``: the decision's ``details.answer`` (None when the turn was no state
    answer)."""
    if answer is None:
        return Score(entry.text, False, False, must_say(entry, all_devices), reply)
    kind_ok = answer["kind"] == entry.kind
    if entry.device is not None:
        target_ok = answer["devices"] == [entry.device]
    elif entry.zone is not None:
        target_ok = answer["zone"] == entry.zone
    else:
        target_ok = answer["zone"] is None
    folded = reply.casefold()
    missing = [
        options
        for options in must_say(entry, all_devices)
        if not any(option.casefold() in folded for option in options)
    ]
    return Score(entry.text, kind_ok, target_ok, missing, reply)


Asker = Callable[[str], tuple[str, dict[str, Any] | None]]
