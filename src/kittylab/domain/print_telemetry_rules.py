"""Print-failure rules over a printer's recent telemetry: pure functions, no I/O.

Each rule reads a short history of normalized printer states
(``kittylab.domain.device_state.PrinterState``, as drivers report them) and returns one
``Verdict`` (from ``kittylab.domain.print_monitoring``) with reasons an operator
understands:

- **thermal runaway** (failure): a heater is on and below its target but the temperature
  is not climbing (a dead heater, a thermistor fallen out of the block), a heater is far
  above its target and not cooling towards it, or a heater that is off keeps getting
  hotter (a stuck-on heater).
- **temperature deviation** (warning): once a heater has reached its target it drifts
  more than a few degrees away and stays there longer than a grace period.
- **progress stall**: printing, but the progress (below 100 %) has not moved for minutes
  (warning, then failure).
- **filament runout** (failure): the runout sensor reports no filament on consecutive
  readings while printing.
- **temperature limit** (failure): a heater's target is above the printer's declared limit
  (its G-code policy, ``kittylab.domain.gcode_policy``), or its temperature is more than
  ``limit_margin_c`` above it, whatever the file said and whoever set it (a macro, the
  printer's screen, a console). The chamber is judged when a printer reports one.

The defaults follow the firmware's own heater checks (Klipper's ``verify_heater``: a
heater below target by more than 5 °C must gain 2 °C per 20 s, 60 s for a bed; Marlin's
"close to target" window of 3 °C). These rules are a second line, not a replacement for the
firmware's thermal protection, which acts in milliseconds; they exist so a problem the
firmware does not catch, or a printer whose protection is off, still reaches a person.

Histories are sequences of ``PrinterSample`` in any order (they are sorted by time); a
rule that lacks the data it needs (no target reported, too short a history) answers ok and
says why. Keys missing from a state are treated as unknown, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal, TypeGuard

from kittylab.domain.device_state import PrinterPhase
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.gcode_policy import DEFAULT_POLICY, GcodePolicy, HeaterKind
from kittylab.domain.print_monitoring import Condition, Severity, Verdict

Heater = Literal["nozzle", "bed"]
HEATERS: tuple[Heater, ...] = ("nozzle", "bed")
LIMITED_HEATERS: tuple[HeaterKind, ...] = ("nozzle", "bed", "chamber")


@dataclass(frozen=True)
class PrinterSample:
    """A printer's normalized state (the ``PrinterState`` shape) as observed at ``at``
    (timezone-aware)."""

    at: datetime
    state: Mapping[str, Any]

    @property
    def phase(self) -> str | None:
        value = self.state.get("state")
        return value if isinstance(value, str) else None

    @property
    def printing(self) -> bool:
        return self.phase == PrinterPhase.PRINTING.value

    def temperature(self, heater: HeaterKind) -> tuple[float, float] | None:
        """``(actual, target)`` of ``heater``, or None when not reported as numbers."""
        return self._temperatures[heater]

    # Parsed once per sample: rules look at every sample's temperatures several times.
    @cached_property
    def _temperatures(self) -> dict[str, tuple[float, float] | None]:
        parsed: dict[str, tuple[float, float] | None] = {}
        for heater in LIMITED_HEATERS:
            parsed[heater] = None
            reading = self.state.get(heater)
            if isinstance(reading, Mapping):
                actual, target = reading.get("actual"), reading.get("target")
                if _is_number(actual) and _is_number(target):
                    parsed[heater] = (float(actual), float(target))
        return parsed

    @property
    def progress(self) -> float | None:
        value = self.state.get("progress")
        return float(value) if _is_number(value) else None

    @property
    def filament_present(self) -> bool | None:
        value = self.state.get("filament_present")
        return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class HeaterLimits:
    """Limits for one heater. Temperatures in °C, durations in seconds.

    - ``hysteresis_c``: within this of the target counts as "at temperature"; below it
      the heater is expected to be climbing.
    - ``heating_gain_c`` / ``heating_check_s``: while below target − hysteresis with the
      target unchanged, the temperature must rise at least this much per this period.
    - ``overshoot_c``: above target + this on two consecutive readings, and not cooling
      towards it, is a runaway.
    - ``off_rise_c`` / ``off_rise_window_s``: a heater whose target is 0 rising this much
      within this window is stuck on.
    - ``deviation_c`` / ``deviation_grace_s``: after reaching target, further away than
      this for longer than this is a deviation (warning).
    """

    hysteresis_c: float = 5.0
    heating_gain_c: float = 2.0
    heating_check_s: float = 20.0
    overshoot_c: float = 15.0
    off_rise_c: float = 10.0
    off_rise_window_s: float = 60.0
    deviation_c: float = 10.0
    deviation_grace_s: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "hysteresis_c",
            "heating_gain_c",
            "heating_check_s",
            "overshoot_c",
            "off_rise_c",
            "off_rise_window_s",
            "deviation_c",
            "deviation_grace_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationFailed(name, "must be a positive number")


NOZZLE_LIMITS = HeaterLimits()
# Beds are big and slow: Klipper gives them 60 s to gain 2 °C; their drift is slower too.
BED_LIMITS = HeaterLimits(heating_check_s=60.0, off_rise_window_s=120.0, deviation_grace_s=120.0)


@dataclass(frozen=True)
class TelemetryRules:
    """All telemetry-rule parameters (seconds unless named otherwise)."""

    nozzle: HeaterLimits = NOZZLE_LIMITS
    bed: HeaterLimits = BED_LIMITS
    stall_warning_s: float = 300.0
    stall_failure_s: float = 900.0
    runout_consecutive_readings: int = 2
    limit_margin_c: float = 5.0
    """How far a heater's *temperature* may pass the printer's limit before it is a
    failure: a heater held at its limit overshoots by a degree or two. A *target* above
    the limit has no margin."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit_margin_c) and self.limit_margin_c >= 0):
            raise ValidationFailed("limit_margin_c", "must be a number of °C, 0 or more")
        if not (math.isfinite(self.stall_warning_s) and self.stall_warning_s > 0):
            raise ValidationFailed("stall_warning_s", "must be a positive number")
        if not (
            math.isfinite(self.stall_failure_s) and self.stall_failure_s >= self.stall_warning_s
        ):
            raise ValidationFailed("stall_failure_s", "must not be below stall_warning_s")
        if self.runout_consecutive_readings < 1:
            raise ValidationFailed("runout_consecutive_readings", "must be at least 1")

    def limits(self, heater: Heater) -> HeaterLimits:
        return self.nozzle if heater == "nozzle" else self.bed

    @property
    def history_seconds(self) -> float:
        """How much history the rules need to see everything they look for: keep at least
        this much (plus one sample interval) per printer."""
        heater_windows = (
            max(h.heating_check_s, h.off_rise_window_s, h.deviation_grace_s)
            for h in (self.nozzle, self.bed)
        )
        return max(self.stall_failure_s, *heater_windows)


def trim_history(
    history: Iterable[PrinterSample], now: datetime, keep_seconds: float
) -> tuple[PrinterSample, ...]:
    """The samples no older than ``keep_seconds`` before ``now``, oldest first, plus the
    newest older one: rules measure durations from it, so dropping it would shorten every
    duration by up to one sample interval."""
    ordered = _chronological(history)
    cutoff = now - timedelta(seconds=keep_seconds)
    recent = [i for i, s in enumerate(ordered) if s.at >= cutoff]
    if not recent:
        return ordered[-1:]
    return ordered[max(0, recent[0] - 1) :]


def evaluate_telemetry(
    history: Iterable[PrinterSample],
    rules: TelemetryRules | None = None,
    policy: GcodePolicy = DEFAULT_POLICY,
) -> list[Verdict]:
    """Every rule's verdict on ``history`` (both heaters, each heater against ``policy``'s
    limit, stall, runout), ok ones included; filter on ``verdict.severity.alerts``."""
    r = rules or TelemetryRules()
    samples = _chronological(history)
    verdicts: list[Verdict] = []
    for limited in LIMITED_HEATERS:
        verdict = check_temperature_limit(samples, limited, policy.limit(limited), r.limit_margin_c)
        if verdict is not None:
            verdicts.append(verdict)
    for heater in HEATERS:
        verdicts.append(check_thermal_runaway(samples, heater, r.limits(heater)))
        verdicts.append(check_temperature_deviation(samples, heater, r.limits(heater)))
    verdicts.append(check_progress_stall(samples, r.stall_warning_s, r.stall_failure_s))
    verdicts.append(check_filament_runout(samples, r.runout_consecutive_readings))
    return verdicts


def check_temperature_limit(
    history: Iterable[PrinterSample], heater: HeaterKind, limit_c: float, margin_c: float = 5.0
) -> Verdict | None:
    """Failure when the latest reading of ``heater`` has a target above ``limit_c`` or a
    temperature above ``limit_c + margin_c``; None when the printer does not report that
    heater (most report no chamber)."""
    samples = [s for s in _chronological(history) if s.temperature(heater) is not None]
    if not samples:
        return None
    reading = samples[-1].temperature(heater)
    assert reading is not None
    actual, target = reading
    measurements = {"actual_c": actual, "target_c": target, "limit_c": limit_c}
    if target > limit_c:
        reason = (
            f"{heater} target is {target:.0f} °C, above this printer's {limit_c:g} °C limit "
            f"({actual:.1f} °C now): whatever set it, the printer must not go there"
        )
    elif actual > limit_c + margin_c:
        reason = (
            f"{heater} is at {actual:.1f} °C, above this printer's {limit_c:g} °C limit "
            f"(by more than the {margin_c:g} °C a heater may overshoot)"
        )
    else:
        return Verdict(
            Condition.TEMPERATURE_LIMIT,
            Severity.OK,
            0.0,
            (f"{heater} at {actual:.1f} °C, target {target:.0f} °C, within {limit_c:g} °C",),
            measurements,
            heater,
        )
    return Verdict(
        Condition.TEMPERATURE_LIMIT, Severity.FAILURE, 1.0, (reason,), measurements, heater
    )


def check_thermal_runaway(
    history: Iterable[PrinterSample], heater: Heater, limits: HeaterLimits = NOZZLE_LIMITS
) -> Verdict:
    """Failure when ``heater`` is out of control; see the module docstring."""
    samples = [s for s in _chronological(history) if s.temperature(heater) is not None]
    if not samples:
        return _ok(Condition.THERMAL_RUNAWAY, heater, f"no {heater} temperature reported")
    latest = samples[-1]
    actual, target = _temps(latest, heater)

    if target > 0:
        overshoot = _check_overshoot(samples, heater, limits)
        if overshoot is not None:
            return overshoot
        if actual < target - limits.hysteresis_c:
            return _check_heating_gain(samples, heater, limits)
        return _ok(
            Condition.THERMAL_RUNAWAY,
            heater,
            f"{heater} at {actual:.1f} °C is within {limits.hysteresis_c:g} °C of (or "
            f"above) its {target:.0f} °C target",
            confidence=0.0,
        )
    return _check_heater_off(samples, heater, limits)


def check_temperature_deviation(
    history: Iterable[PrinterSample], heater: Heater, limits: HeaterLimits = NOZZLE_LIMITS
) -> Verdict:
    """Warning when ``heater`` reached its (unchanged, nonzero) target and has since been
    more than ``deviation_c`` away from it for longer than ``deviation_grace_s``."""
    samples = [s for s in _chronological(history) if s.temperature(heater) is not None]
    if not samples:
        return _ok(Condition.TEMPERATURE_DEVIATION, heater, f"no {heater} temperature reported")
    segment = _same_target_segment(samples, heater)
    actual, target = _temps(samples[-1], heater)
    if target <= 0:
        return _ok(Condition.TEMPERATURE_DEVIATION, heater, f"{heater} heater is off")
    reached = next(
        (
            i
            for i, s in enumerate(segment)
            if abs(_temps(s, heater)[0] - target) <= limits.hysteresis_c
        ),
        None,
    )
    if reached is None:
        return _ok(
            Condition.TEMPERATURE_DEVIATION,
            heater,
            f"{heater} has not reached its {target:.0f} °C target yet",
        )
    # The start of the current run of far-away readings, if the latest one is far away.
    start: PrinterSample | None = None
    for s in reversed(segment[reached:]):
        if abs(_temps(s, heater)[0] - target) > limits.deviation_c:
            start = s
        else:
            break
    if start is None:
        return _ok(
            Condition.TEMPERATURE_DEVIATION,
            heater,
            f"{heater} at {actual:.1f} °C is within {limits.deviation_c:g} °C of its "
            f"{target:.0f} °C target",
        )
    lasted = (samples[-1].at - start.at).total_seconds()
    offset = actual - target
    direction = "above" if offset > 0 else "below"
    measurements = {
        "actual_c": actual,
        "target_c": target,
        "offset_c": offset,
        "seconds": lasted,
        "grace_s": limits.deviation_grace_s,
    }
    if lasted <= limits.deviation_grace_s:
        return Verdict(
            Condition.TEMPERATURE_DEVIATION,
            Severity.OK,
            _beyond(lasted, limits.deviation_grace_s),
            (
                f"{heater} is {abs(offset):.1f} °C {direction} its {target:.0f} °C target "
                f"for {lasted:.0f} s, within the {limits.deviation_grace_s:g} s grace period",
            ),
            measurements,
            heater,
        )
    return Verdict(
        Condition.TEMPERATURE_DEVIATION,
        Severity.WARNING,
        _beyond(lasted, limits.deviation_grace_s),
        (
            f"{heater} reached its {target:.0f} °C target but has been {abs(offset):.1f} °C "
            f"{direction} it ({actual:.1f} °C) for {lasted:.0f} s, longer than the "
            f"{limits.deviation_grace_s:g} s grace period",
        ),
        measurements,
        heater,
    )


def check_progress_stall(
    history: Iterable[PrinterSample], warning_s: float = 300.0, failure_s: float = 900.0
) -> Verdict:
    """Warning when the printer has been printing with unchanged progress for longer than
    ``warning_s``, failure past ``failure_s``. A pause (or any other phase) restarts the
    clock: only uninterrupted printing counts."""
    samples = _chronological(history)
    if not samples or not samples[-1].printing:
        return _ok(Condition.PROGRESS_STALL, None, "not printing")
    latest_progress = samples[-1].progress
    if latest_progress is None:
        return _ok(Condition.PROGRESS_STALL, None, "the printer does not report progress")
    if latest_progress >= 1.0:
        # The whole file is sent; the printer finishes buffered moves and end-of-print
        # waits (cooling the bed, say) without any progress to show.
        return _ok(Condition.PROGRESS_STALL, None, "the whole file has been sent")
    since = samples[-1]
    for s in reversed(samples):
        if not s.printing or s.progress is None or s.progress != latest_progress:
            break
        since = s
    stalled = (samples[-1].at - since.at).total_seconds()
    measurements = {
        "progress": latest_progress,
        "seconds": stalled,
        "warning_s": warning_s,
        "failure_s": failure_s,
    }
    percent = latest_progress * 100
    if stalled > failure_s:
        severity, limit = Severity.FAILURE, failure_s
    elif stalled > warning_s:
        severity, limit = Severity.WARNING, warning_s
    else:
        return Verdict(
            Condition.PROGRESS_STALL,
            Severity.OK,
            _beyond(stalled, warning_s),
            (f"progress {percent:.1f} % unchanged for {stalled:.0f} s",),
            measurements,
        )
    return Verdict(
        Condition.PROGRESS_STALL,
        severity,
        _beyond(stalled, limit),
        (
            f"printing, but progress has been stuck at {percent:.1f} % for "
            f"{_minutes(stalled)}, longer than {_minutes(limit)}",
        ),
        measurements,
    )


def check_filament_runout(
    history: Iterable[PrinterSample], consecutive_readings: int = 2
) -> Verdict:
    """Failure when the last ``consecutive_readings`` samples are all printing and all
    report no filament (one reading alone may be a bouncing switch)."""
    samples = _chronological(history)
    if not samples or not samples[-1].printing:
        return _ok(Condition.FILAMENT_RUNOUT, None, "not printing")
    if samples[-1].filament_present is None:
        return _ok(Condition.FILAMENT_RUNOUT, None, "the printer has no runout sensor")
    empty = 0
    for s in reversed(samples):
        if not s.printing or s.filament_present is not False:
            break
        empty += 1
    measurements = {"readings_without_filament": float(empty)}
    if empty == 0:
        return Verdict(
            Condition.FILAMENT_RUNOUT,
            Severity.OK,
            0.0,
            ("the runout sensor reports filament",),
            measurements,
        )
    # Each consistent reading halves the doubt that the switch is just bouncing.
    confidence = 1.0 - 0.5**empty
    if empty < consecutive_readings:
        return Verdict(
            Condition.FILAMENT_RUNOUT,
            Severity.OK,
            confidence,
            (
                f"the runout sensor reported no filament {empty} time(s); waiting for "
                f"{consecutive_readings} readings in a row",
            ),
            measurements,
        )
    return Verdict(
        Condition.FILAMENT_RUNOUT,
        Severity.FAILURE,
        confidence,
        (f"printing, but the runout sensor reports no filament ({empty} readings in a row)",),
        measurements,
    )


def _check_overshoot(
    samples: Sequence[PrinterSample], heater: Heater, limits: HeaterLimits
) -> Verdict | None:
    """A failure when the heater is far above its target on the last two readings and not
    cooling towards it; None otherwise. A lowered target (a bed at 100 °C told 60 °C for
    the later layers) is far above for minutes while it cools: that is not a runaway, so
    the target must have been in place for ``heating_check_s`` and the temperature must
    not have dropped by ``heating_gain_c`` over that period."""
    segment = _same_target_segment(samples, heater)
    if len(segment) < 2:
        return None
    readings = [_temps(s, heater) for s in segment[-2:]]
    if not all(a > t + limits.overshoot_c for a, t in readings):
        return None
    latest = segment[-1]
    actual, target = readings[-1]
    cutoff = latest.at - timedelta(seconds=limits.heating_check_s)
    reference = next((s for s in reversed(segment) if s.at <= cutoff), None)
    if reference is None:
        return None  # the target is too new to tell a runaway from cooling down
    drop = _temps(reference, heater)[0] - actual
    if drop >= limits.heating_gain_c:
        return None
    excess = actual - target
    return Verdict(
        Condition.THERMAL_RUNAWAY,
        Severity.FAILURE,
        _beyond(excess, limits.overshoot_c),
        (
            f"{heater} is at {actual:.1f} °C, {excess:.1f} °C above its {target:.0f} °C "
            f"target (limit {limits.overshoot_c:g} °C) and not cooling: the heater may be "
            "stuck on",
        ),
        {"actual_c": actual, "target_c": target, "excess_c": excess},
        heater,
    )


def _check_heating_gain(
    samples: Sequence[PrinterSample], heater: Heater, limits: HeaterLimits
) -> Verdict:
    segment = _same_target_segment(samples, heater)
    latest = segment[-1]
    actual, target = _temps(latest, heater)
    span = (latest.at - segment[0].at).total_seconds()
    if span < limits.heating_check_s:
        return _ok(
            Condition.THERMAL_RUNAWAY,
            heater,
            f"{heater} is heating towards {target:.0f} °C ({actual:.1f} °C); "
            f"checked after {limits.heating_check_s:g} s",
        )
    # The reading that opened the check period: the newest one at least that old.
    cutoff = latest.at - timedelta(seconds=limits.heating_check_s)
    reference = next(s for s in reversed(segment) if s.at <= cutoff)
    before = _temps(reference, heater)[0]
    elapsed = (latest.at - reference.at).total_seconds()
    rise = actual - before
    measurements = {
        "actual_c": actual,
        "target_c": target,
        "rise_c": rise,
        "seconds": elapsed,
        "required_rise_c": limits.heating_gain_c,
    }
    if rise >= limits.heating_gain_c:
        return Verdict(
            Condition.THERMAL_RUNAWAY,
            Severity.OK,
            0.0,
            (f"{heater} is heating: +{rise:.1f} °C in {elapsed:.0f} s towards {target:.0f} °C",),
            measurements,
            heater,
        )
    shortfall = min(2.0, (limits.heating_gain_c - rise) / limits.heating_gain_c)
    if rise < 0:
        what = f"fell {-rise:.1f} °C in {elapsed:.0f} s ({before:.1f} → {actual:.1f} °C)"
    else:
        what = f"rose only {rise:.1f} °C in {elapsed:.0f} s ({before:.1f} → {actual:.1f} °C)"
    return Verdict(
        Condition.THERMAL_RUNAWAY,
        Severity.FAILURE,
        0.6 + 0.2 * shortfall,
        (
            f"{heater} heater is on with a {target:.0f} °C target but {what}; a working "
            f"heater gains at least {limits.heating_gain_c:g} °C in "
            f"{limits.heating_check_s:g} s: check the heater and its thermistor",
        ),
        measurements,
        heater,
    )


def _check_heater_off(
    samples: Sequence[PrinterSample], heater: Heater, limits: HeaterLimits
) -> Verdict:
    latest = samples[-1]
    actual = _temps(latest, heater)[0]
    cutoff = latest.at - timedelta(seconds=limits.off_rise_window_s)
    window = [s for s in samples if s.at >= cutoff]
    off = [s for s in window if _temps(s, heater)[1] <= 0]
    if len(off) < 2 or len(off) != len(window):
        return _ok(Condition.THERMAL_RUNAWAY, heater, f"{heater} heater is off")
    coolest = min(_temps(s, heater)[0] for s in off)
    rise = actual - coolest
    if rise < limits.off_rise_c:
        return _ok(Condition.THERMAL_RUNAWAY, heater, f"{heater} heater is off")
    return Verdict(
        Condition.THERMAL_RUNAWAY,
        Severity.FAILURE,
        _beyond(rise, limits.off_rise_c),
        (
            f"{heater} heater is off but its temperature rose {rise:.1f} °C to "
            f"{actual:.1f} °C within {limits.off_rise_window_s:g} s: the heater may be "
            "stuck on",
        ),
        {"actual_c": actual, "rise_c": rise, "window_s": limits.off_rise_window_s},
        heater,
    )


def _same_target_segment(samples: Sequence[PrinterSample], heater: Heater) -> list[PrinterSample]:
    """The latest run of samples whose target equals the latest target."""
    target = _temps(samples[-1], heater)[1]
    segment: list[PrinterSample] = []
    for s in reversed(samples):
        if _temps(s, heater)[1] != target:
            break
        segment.append(s)
    segment.reverse()
    return segment


def _temps(sample: PrinterSample, heater: Heater) -> tuple[float, float]:
    reading = sample.temperature(heater)
    assert reading is not None  # callers keep only samples that report this heater
    return reading


def _chronological(history: Iterable[PrinterSample]) -> tuple[PrinterSample, ...]:
    return tuple(sorted(history, key=lambda s: s.at))


def _beyond(observed: float, limit: float) -> float:
    """Confidence from how far ``observed`` is past ``limit``: 0.5 at the limit, 0.75 at
    twice it, approaching 1 far beyond; below the limit, proportionally under 0.5."""
    if limit <= 0:
        return 1.0
    if observed < limit:
        return max(0.0, 0.5 * observed / limit)
    return 1.0 - 0.5 * limit / observed


def _ok(condition: Condition, subject: str | None, reason: str, confidence: float = 0.0) -> Verdict:
    return Verdict(condition, Severity.OK, confidence, (reason,), {}, subject)


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
