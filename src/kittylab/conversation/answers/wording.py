"""State answers in words (pure): "Print farm: 22.4 °C, 45 % RH, 8 s ago"; "The CNC door
is locked; Erin Engineer's lock is on the CNC spindle".

Every function takes the facts and ``now`` and returns the reply and the values it gives
(``Answer.values``), so what was said can be checked against what was stored. A value
the lab does not have is said to be missing, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kittylab.conversation.answers.facts import (
    ApprovalFact,
    DeviceFact,
    JobFact,
    LockHeld,
    Presence,
    SnapshotFact,
)
from kittylab.domain.device_state import PrinterPhase, printer_phase

Values = dict[str, Any]


def age(seconds: float | None) -> str:
    """ "8 s ago", "3 min ago", "2 h ago", "3 days ago"; "never reported" for None."""
    if seconds is None:
        return "never reported"
    if seconds < 90:
        return f"{round(seconds)} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def duration(seconds: float) -> str:
    """ "45 s", "21 min", "1 h 5 min"."""
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def zone_title(zone: str | None) -> str:
    if not zone:
        return "The lab"
    words = zone.replace("-", " ").replace("_", " ")
    return words[:1].upper() + words[1:]


def zone_words(zone: str | None) -> str:
    return "the lab" if not zone else "the " + zone.replace("-", " ").replace("_", " ")


def join(items: Sequence[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _when(fact: DeviceFact, now: datetime) -> str:
    text = age(fact.age_seconds(now))
    if not fact.online:
        text += " (offline)"
    if fact.note:
        text += f"; {fact.note}"
    return text


def _no_state(fact: DeviceFact, now: datetime) -> str:
    reason = f" ({fact.note})" if fact.note else ""
    return f"{fact.display_name} has not reported its state yet{reason}."


# -- sensors ---------------------------------------------------------------------------

_MEASURE_NAMES = {"temperature": "temperature", "humidity": "humidity", "air_quality": "air"}


def reading(measure: str, value: float, unit: str) -> str:
    """One channel as people read it: "22.4 °C", "45 % RH", "12.0 µg/m³ PM2.5"."""
    if measure == "humidity" or unit.strip() == "%":
        return f"{value:.0f} % RH" if measure == "humidity" else f"{value:.0f} %"
    return f"{value:.1f} {unit}".strip()


def sensors(
    facts: Sequence[DeviceFact], aspects: frozenset[str], now: datetime
) -> tuple[str, Values]:
    lines: list[str] = []
    values: Values = {}
    several = len({f.zone for f in facts}) > 1 or len(facts) > 1
    for fact in facts:
        if not fact.state:
            lines.append(_no_state(fact, now))
            continue
        wanted = [m for m in fact.state if not aspects or m in aspects]
        parts = []
        for measure in wanted:
            channel = fact.state.get(measure)
            if not isinstance(channel, dict) or not isinstance(channel.get("value"), int | float):
                continue
            value = float(channel["value"])
            parts.append(reading(measure, value, str(channel.get("unit", ""))))
            values[measure] = value
        missing = [_MEASURE_NAMES.get(a, a) for a in sorted(aspects) if a not in fact.state]
        label = zone_title(fact.zone) + (f" ({fact.display_name})" if several else "")
        if not parts:
            lines.append(f"{label}: {fact.display_name} reports no {join(missing) or 'values'}.")
            continue
        lines.append(f"{label}: {', '.join(parts)}, {_when(fact, now)}.")
    return " ".join(lines), values


# -- printers --------------------------------------------------------------------------


def _heater(state: dict[str, Any], name: str) -> tuple[float, float] | None:
    heater = state.get(name)
    if not isinstance(heater, dict) or not isinstance(heater.get("actual"), int | float):
        return None
    target = heater.get("target")
    return float(heater["actual"]), float(target) if isinstance(target, int | float) else 0.0


def temperature(actual: float, target: float) -> str:
    if target > 0:
        return f"{actual:.0f} °C (target {target:.0f} °C)"
    return f"{actual:.0f} °C (heater off)"


_PHASE_WORDS = {
    PrinterPhase.IDLE: "idle",
    PrinterPhase.HEATING: "heating up",
    PrinterPhase.PRINTING: "printing",
    PrinterPhase.PAUSED: "paused",
    PrinterPhase.COMPLETED: "done (the last print completed)",
    PrinterPhase.FAILED: "stopped: the last print failed",
    PrinterPhase.CANCELLED: "idle (the last print was cancelled)",
    PrinterPhase.ERROR: "in an error state",
    PrinterPhase.DISCONNECTED: "disconnected from its host",
}


def printer(fact: DeviceFact, aspects: frozenset[str], now: datetime) -> tuple[str, Values]:
    """One printer: its state always; then what was asked (everything when nothing in
    particular was): temperatures, progress with the time left, the file."""
    state = fact.state or {}
    phase = printer_phase(state)
    if phase is None:
        return _no_state(fact, now), {}
    values: Values = {"state": phase.value}
    everything = not aspects or aspects <= {"state"}
    parts: list[str] = []
    file = state.get("file") if isinstance(state.get("file"), str) else None
    head = f"{fact.display_name} is {_PHASE_WORDS[phase]}"
    if file and phase.busy and (everything or "file" in aspects):
        head += f" {file}"
        values["file"] = file
    elif "file" in aspects:
        if file:
            parts.append(f"its file is {file}")
            values["file"] = file
        else:
            parts.append("no file is loaded")
    timing = {"progress", "time_left"} & aspects
    if (everything and (phase.busy or phase is PrinterPhase.COMPLETED)) or timing:
        # Progress and the time left go together: either answers "how far along".
        progress = state.get("progress")
        if isinstance(progress, int | float):
            parts.append(f"{progress * 100:.0f} % done")
            values["progress"] = round(float(progress) * 100)
        left = state.get("seconds_left")
        if isinstance(left, int | float) and phase.busy:
            parts.append(f"about {duration(float(left))} left")
            values["time_left"] = duration(float(left))
        elif timing and not phase.busy:
            parts.append("nothing is printing, so no time is left")
    heaters = [h for h in ("nozzle", "bed", "chamber") if everything or h in aspects]
    for name in heaters:
        reading_ = _heater(state, name)
        if reading_ is None:
            if name in aspects:
                parts.append(f"it reports no {name} temperature")
            continue
        parts.append(f"{name} {temperature(*reading_)}")
        values[f"{name}_temperature"] = round(reading_[0])
    if phase is PrinterPhase.FAILED and isinstance(state.get("failure"), str):
        parts.append(f"failure: {state['failure']}")
    text = head + (": " + "; ".join(parts) if parts else "")
    return f"{text} ({_when(fact, now)}).", values


def printers(
    facts: Sequence[DeviceFact], aspects: frozenset[str], now: datetime
) -> tuple[str, Values]:
    if len(facts) == 1:
        return printer(facts[0], aspects, now)
    sentences = []
    values: Values = {}
    for fact in facts:
        text, got = printer(fact, aspects, now)
        sentences.append(text)
        values[fact.external_id] = got
    busy = sum(1 for f in facts if (p := printer_phase(f.state)) is not None and p.busy)
    lead = f"{busy} of {len(facts)} printers busy. " if facts else ""
    return lead + " ".join(sentences), values


# -- doors, lights, power ---------------------------------------------------------------


def doors(facts: Sequence[DeviceFact], now: datetime) -> tuple[str, Values]:
    values: Values = {}
    lines = []
    for fact in facts:
        locked = (fact.state or {}).get("locked")
        if not isinstance(locked, bool):
            lines.append(_no_state(fact, now))
            continue
        values[fact.external_id] = "locked" if locked else "unlocked"
        lines.append(
            f"{cap(the(fact.display_name))} is {'locked' if locked else 'unlocked'} "
            f"({_when(fact, now)})."
        )
    if len(facts) > 1 and values:
        open_ = [f.display_name for f in facts if values.get(f.external_id) == "unlocked"]
        lead = "Every door is locked. " if not open_ else f"Unlocked: {join(open_)}. "
        return lead + " ".join(lines), values
    return " ".join(lines) or "There are no doors here.", values


def switches(facts: Sequence[DeviceFact], now: datetime) -> tuple[str, Values]:
    """Lights and power relays: on or off, a light's brightness."""
    values: Values = {}
    lines = []
    for fact in facts:
        state = fact.state or {}
        on = state.get("on")
        if not isinstance(on, bool):
            lines.append(_no_state(fact, now))
            continue
        text = f"{cap(the(fact.display_name))} {'are' if _plural(fact) else 'is'} "
        text += "on" if on else "off"
        got: Values = {"on": on}
        brightness = state.get("brightness")
        if on and isinstance(brightness, int | float):
            text += f" at {brightness:.0f} %"
            got["brightness"] = round(float(brightness))
        watts = state.get("watts")
        if on and isinstance(watts, int | float) and fact.kind == "power":
            text += f", drawing {watts:.0f} W"
        values[fact.external_id] = got
        lines.append(f"{text} ({_when(fact, now)}).")
    if len(facts) > 1 and values:
        on_ = [f.display_name for f in facts if values.get(f.external_id, {}).get("on")]
        lead = f"On: {join(on_)}. " if on_ else "Everything here is off. "
        return lead + " ".join(lines), values
    return " ".join(lines) or "There is nothing like that here.", values


def _plural(fact: DeviceFact) -> bool:
    return fact.display_name.casefold().endswith(("lights", "lamps"))


def the(name: str) -> str:
    """ "the farm lights" for a name written in lower case, "Prusa" for a proper name."""
    return f"the {name}" if name[:1].islower() else name


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- locks, presence, jobs, approvals, cameras -----------------------------------------


def locks(held: Sequence[LockHeld], scope: str, now: datetime) -> tuple[str, Values]:
    if not held:
        return f"No locks are held on {scope}.", {"holders": [], "devices": []}
    by_device: dict[str, list[LockHeld]] = {}
    for lock in held:
        by_device.setdefault(lock.device_name, []).append(lock)
    sentences = []
    for device, items in by_device.items():
        owners = join([f"{lock.owner_name}'s" for lock in items])
        noun = "lock is" if len(items) == 1 else "locks are"
        reasons = "; ".join(f"{lock.owner_name}: {lock.reason}" for lock in items)
        since = age((now - items[0].placed_at).total_seconds())
        sentences.append(f"{owners} {noun} on {the(device)} (since {since}; {reasons}).")
    return " ".join(sentences), {
        "holders": sorted({lock.owner_name for lock in held}),
        "devices": sorted(by_device),
    }


def presence(rooms: Sequence[Presence], person: str | None) -> tuple[str, Values]:
    values: Values = {r.zone: list(r.people) for r in rooms}
    if person is not None:
        where = [r.zone for r in rooms if person in r.people]
        if where:
            return f"{person} is checked in to {join([zone_words(z) for z in where])}.", {
                **values,
                "zone": where,
            }
        scope = join([zone_words(r.zone) for r in rooms]) if len(rooms) == 1 else "any zone"
        return f"{person} is not checked in to {scope}.", {**values, "zone": []}
    lines = []
    for room in rooms:
        if room.people:
            count = len(room.people)
            who = join(list(room.people))
            lines.append(
                f"{zone_title(room.zone)}: {who} ({count} {'person' if count == 1 else 'people'})."
            )
        elif len(rooms) == 1:
            lines.append(f"Nobody is checked in to {zone_words(room.zone)}.")
    if not lines:
        return "Nobody is checked in anywhere in the lab.", values
    return " ".join(lines), values


def job_line(job: JobFact, now: datetime) -> str:
    when = job.completed_at or job.created_at
    status = job.status if job.stage is None or job.status != "preparing" else job.stage
    text = f"{job.file} on {the(job.printer)} for {job.owner_name}: {status}"
    if job.reason and job.status in ("failed", "aborted"):
        text += f" ({job.reason})"
    return f"{text}, {age((now - when).total_seconds())}"


def queue(jobs: Sequence[JobFact], scope: str, now: datetime) -> tuple[str, Values]:
    if not jobs:
        return f"The print queue for {scope} is empty.", {"jobs": []}
    lines = [f"{i}. {job_line(j, now)}" for i, j in enumerate(jobs, 1)]
    noun = "job" if len(jobs) == 1 else "jobs"
    return f"{len(jobs)} {noun} waiting for {scope}: " + "; ".join(lines) + ".", {
        "jobs": [j.file for j in jobs]
    }


def last_job(job: JobFact | None, scope: str, now: datetime) -> tuple[str, Values]:
    if job is None:
        return f"No print has finished for {scope} yet.", {"outcome": None}
    outcome = {"completed": "completed", "failed": "failed", "aborted": "was cancelled"}.get(
        job.status, job.status
    )
    text = (
        f"The last print for {scope}, {job.file} on {the(job.printer)} for {job.owner_name}, "
        f"{outcome}"
    )
    if job.reason and job.status in ("failed", "aborted"):
        text += f": {job.reason}"
    when = job.completed_at or job.created_at
    return f"{text} ({age((now - when).total_seconds())}).", {
        "outcome": job.status,
        "file": job.file,
    }


def approvals(
    items: Sequence[ApprovalFact], scope: str | None, now: datetime
) -> tuple[str, Values]:
    mine = [a for a in items if a.mine_to_give]
    others = [a for a in items if not a.mine_to_give]
    where = f" for {scope}" if scope else ""

    def line(a: ApprovalFact) -> str:
        what = (a.intent or "a request").replace("_", " ")
        on = f" on {the(a.device_name)}" if a.device_name else ""
        expiry = ""
        if a.expires_at is not None:
            left = (a.expires_at - now).total_seconds()
            expiry = f", expires in {duration(max(0.0, left))}"
        return (
            f"{what}{on} asked by {a.initiator_name} {age((now - a.created_at).total_seconds())} "
            f"({a.approvals} of {a.needed} approvals{expiry})"
        )

    values: Values = {"approvals": [str(a.event_id) for a in mine]}
    if mine:
        text = (
            f"{len(mine)} waiting for your approval{where}: "
            + "; ".join(line(a) for a in mine)
            + "."
        )
    else:
        text = f"Nothing is waiting for your approval{where}."
    if others:
        text += (
            f" Also pending{where}, for others to approve: "
            + "; ".join(line(a) for a in others)
            + "."
        )
    return text, values


TAKEN_NOW = "taken now"
"""The source of a picture the camera took for this answer."""


def camera(fact: DeviceFact, snapshot: SnapshotFact | None, now: datetime) -> tuple[str, Values]:
    if snapshot is not None and snapshot.source == TAKEN_NOW:
        return (
            f"Here is {the(fact.display_name)}, just now: {snapshot.link}",
            {"snapshot": snapshot.link},
        )
    if snapshot is None:
        note = f" ({fact.note})" if fact.note else ""
        return (
            f"I have no snapshot from {the(fact.display_name)} to show{note}.",
            {"snapshot": None},
        )
    when = (
        "" if snapshot.taken_at is None else f", {age((now - snapshot.taken_at).total_seconds())}"
    )
    return (
        f"{cap(the(fact.display_name))}'s latest snapshot ({snapshot.source}{when}): "
        f"{snapshot.link}",
        {"snapshot": snapshot.link},
    )
