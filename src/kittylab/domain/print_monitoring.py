"""Print-failure decisions from camera detections: Obico-style temporal smoothing.

A failure-detection model (Obico's ``ml_api`` or anything speaking its protocol) looks at
one camera frame and returns scored boxes. One frame says little: a shadow or a purge line
can score high once. Obico turns the stream of frames into a decision by smoothing, and
this module does the same, as pure code over an immutable state:

- the frame's *evidence* is the sum of its detection confidences;
- ``ewm_mean`` is an exponentially weighted mean of the evidence (span 12 frames), the
  "what is happening now" signal;
- ``short_mean`` is the running mean of the evidence over the current print (up to the last
  310 frames), ``long_mean`` the running mean over the printer's lifetime (up to 7200
  frames, ~20 hours at one frame per 10 s): the printer's base noise level, which a new
  print does not reset;
- the *score* is ``(ewm_mean - long_mean) × sensitivity``: how far "now" is above the
  printer's usual noise;
- the *warning line* is ``(short_mean - long_mean) × 3.8`` clamped to [0.38, 0.78], so a
  print that has looked noisy all along needs a proportionally bigger rise, and the
  *failure line* is the warning line × 1.75;
- score above the failure line → failure (pause), above the warning line → warning
  (notify), otherwise ok; the first 30 frames of a print are never judged, while the means
  settle.

Obico writes the decision as two calls of one test (``is_failing`` with an escalating
factor of 1 and of 1.75); the clamp formulation above is the same decision, written so the
two lines can be reported to an operator. Obico's warm-up divides by ``frames + 1``, which
biases the first means toward zero; here the means are exact running means until the
window is full. Every constant is a field of ``SmoothingParams`` with Obico's published
value as the default.

The lifecycle: ``DetectionState()`` for a printer never seen, ``update`` per analysed
frame, ``start_new_print`` when a new job starts on that printer. The state is small and
JSON-friendly (``as_dict`` / ``from_dict``) so a service can persist it between frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from kittylab.domain.enums import MonitorEventType
from kittylab.domain.errors import ValidationFailed


class Severity(StrEnum):
    """What a monitoring rule concludes. Only ``failure`` justifies pausing a print."""

    OK = "ok"
    WARNING = "warning"  # notify the operator, keep printing
    FAILURE = "failure"  # pause the job, notify with the snapshot

    @property
    def alerts(self) -> bool:
        return self is not Severity.OK


class Condition(StrEnum):
    """The problem a rule looks for."""

    SPAGHETTI = "spaghetti"  # the camera model sees a print coming loose
    TEMPERATURE_DEVIATION = "temperature_deviation"
    THERMAL_RUNAWAY = "thermal_runaway"
    # A heater past the printer's declared limit (its G-code policy), whatever set it.
    TEMPERATURE_LIMIT = "temperature_limit"
    PROGRESS_STALL = "progress_stall"
    FILAMENT_RUNOUT = "filament_runout"

    @property
    def needs_cooldown(self) -> bool:
        """A failure of this condition turns the heaters off as well as pausing: pausing
        does not necessarily stop a heater that is out of control or past its limit."""
        return self in (Condition.THERMAL_RUNAWAY, Condition.TEMPERATURE_LIMIT)

    @property
    def failure_event_type(self) -> MonitorEventType:
        """The PrintMonitorEvent type to record when this condition is a failure.

        The data model has only two failure types (``spaghetti_detected`` and
        ``nozzle_clog``); every telemetry condition is recorded as ``nozzle_clog`` and the
        precise condition travels in the event's ``details`` (``Verdict.details``).
        """
        if self is Condition.SPAGHETTI:
            return MonitorEventType.SPAGHETTI_DETECTED
        return MonitorEventType.NOZZLE_CLOG


@dataclass(frozen=True)
class Verdict:
    """One rule's conclusion about one printer at one moment.

    ``confidence`` (0-1) is how sure the rule is that ``condition`` is present; it is the
    value to store in PrintMonitorEvent.confidence. ``reasons`` are sentences an operator
    understands (numbers with units, no jargon), ``measurements`` the numbers behind them.
    ``(condition, subject)`` identifies the alarm, e.g. to avoid notifying twice.
    """

    condition: Condition
    severity: Severity
    confidence: float
    reasons: tuple[str, ...]
    measurements: Mapping[str, float] = field(default_factory=dict)
    subject: str | None = None  # which part: "nozzle", "bed"; None for the whole print

    def details(self) -> dict[str, Any]:
        """A JSON object for PrintMonitorEvent.details."""
        return {
            "condition": self.condition.value,
            "subject": self.subject,
            "severity": self.severity.value,
            "reasons": list(self.reasons),
            "measurements": {k: round(v, 6) for k, v in self.measurements.items()},
        }


@dataclass(frozen=True)
class BoundingBox:
    """Where a detection is, in pixels of the analysed frame (YOLO convention: the box's
    centre, then its width and height)."""

    x_center: float
    y_center: float
    width: float
    height: float


@dataclass(frozen=True)
class Detection:
    """One scored box from a failure-detection model."""

    label: str
    confidence: float  # 0-1
    box: BoundingBox

    def __post_init__(self) -> None:
        if not (math.isfinite(self.confidence) and 0.0 <= self.confidence <= 1.0):
            raise ValidationFailed("confidence", "must be a number between 0 and 1")


@dataclass(frozen=True)
class SmoothingParams:
    """The constants of the smoothing; defaults are Obico's published values.

    - ``ewm_span``: span of the exponentially weighted mean; alpha = 2 / (span + 1).
    - ``short_window`` / ``long_window``: frames in the print's and the printer's running
      means.
    - ``threshold_low`` / ``threshold_high``: the warning line never goes below / above.
    - ``short_mean_multiple``: the warning line is this many times the print's excess noise
      (``short_mean - long_mean``).
    - ``escalating_factor``: failure line = warning line × this.
    - ``safe_frames``: a print's frames numbered below this (1-based) are never judged.
    - ``sensitivity``: multiplies the score; above 1 alerts earlier, below 1 later (Obico's
      per-printer "detective sensitivity").
    - ``confidence_scale``: multiplies every detection's confidence before summing
      (Obico's per-printer "bending factor"), for a camera that over- or under-reports.
    - ``failure_labels``: only detections with these labels count; ``None`` counts all
      (Obico's model has a single ``failure`` class).
    """

    ewm_span: float = 12.0
    short_window: int = 310
    long_window: int = 7200
    threshold_low: float = 0.38
    threshold_high: float = 0.78
    short_mean_multiple: float = 3.8
    escalating_factor: float = 1.75
    safe_frames: int = 30
    sensitivity: float = 1.0
    confidence_scale: float = 1.0
    failure_labels: frozenset[str] | None = None

    def __post_init__(self) -> None:
        positive = {
            "ewm_span": self.ewm_span,
            "short_window": self.short_window,
            "long_window": self.long_window,
            "threshold_low": self.threshold_low,
            "short_mean_multiple": self.short_mean_multiple,
            "sensitivity": self.sensitivity,
            "confidence_scale": self.confidence_scale,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValidationFailed(name, "must be a positive number")
        if self.ewm_span < 1:
            raise ValidationFailed("ewm_span", "must be at least 1 frame")
        for name, window in (
            ("short_window", self.short_window),
            ("long_window", self.long_window),
        ):
            if window < 1 or window != int(window):
                raise ValidationFailed(name, "must be a whole number of frames, at least 1")
        if not (math.isfinite(self.threshold_high) and self.threshold_high >= self.threshold_low):
            raise ValidationFailed("threshold_high", "must not be below threshold_low")
        if not (math.isfinite(self.escalating_factor) and self.escalating_factor >= 1):
            raise ValidationFailed("escalating_factor", "must be at least 1")
        if self.safe_frames < 0:
            raise ValidationFailed("safe_frames", "must not be negative")

    @property
    def ewm_alpha(self) -> float:
        return 2.0 / (self.ewm_span + 1.0)


@dataclass(frozen=True)
class DetectionState:
    """The smoothing memory of one printer. ``print_frames``, ``ewm_mean`` and
    ``short_mean`` belong to the current print; ``lifetime_frames`` and ``long_mean`` to the
    printer and survive ``start_new_print``."""

    print_frames: int = 0
    lifetime_frames: int = 0
    last_evidence: float = 0.0
    ewm_mean: float = 0.0
    short_mean: float = 0.0
    long_mean: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "print_frames": self.print_frames,
            "lifetime_frames": self.lifetime_frames,
            "last_evidence": self.last_evidence,
            "ewm_mean": self.ewm_mean,
            "short_mean": self.short_mean,
            "long_mean": self.long_mean,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionState:
        """Rebuild a state saved with ``as_dict``; a missing or malformed field raises
        ``ValidationFailed`` naming it (start over with ``DetectionState()`` then)."""
        values: dict[str, Any] = {}
        for name in ("print_frames", "lifetime_frames"):
            raw = data.get(name)
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                raise ValidationFailed(name, "must be a non-negative integer")
            values[name] = raw
        for name in ("last_evidence", "ewm_mean", "short_mean", "long_mean"):
            raw = data.get(name)
            if (
                not isinstance(raw, int | float)
                or isinstance(raw, bool)
                or not math.isfinite(raw)
                or raw < 0
            ):
                raise ValidationFailed(name, "must be a non-negative number")
            values[name] = float(raw)
        return cls(**values)


@dataclass(frozen=True)
class SmoothedScore:
    """The numbers behind a camera verdict, for display and audit."""

    evidence: float  # this frame's summed confidence
    score: float  # (ewm_mean - long_mean) × sensitivity
    warning_line: float
    failure_line: float


def start_new_print(state: DetectionState) -> DetectionState:
    """The state to use for the first frame of a new print on the same printer: the
    print's own means start over, the printer's long-term baseline is kept."""
    return replace(state, print_frames=0, last_evidence=0.0, ewm_mean=0.0, short_mean=0.0)


def frame_evidence(detections: Iterable[Detection], params: SmoothingParams) -> float:
    """The summed, scaled confidence of the detections that count."""
    labels = params.failure_labels
    return sum(
        d.confidence * params.confidence_scale
        for d in detections
        if labels is None or d.label in labels
    )


def update(
    state: DetectionState,
    detections: Iterable[Detection],
    params: SmoothingParams | None = None,
) -> tuple[DetectionState, Verdict]:
    """Fold one analysed frame into ``state``; the new state and the verdict for it.

    An empty ``detections`` is a clean frame (evidence 0) and must be passed too: skipping
    clean frames would keep the smoothed score high.
    """
    p = params or SmoothingParams()
    evidence = frame_evidence(detections, p)
    print_frames = state.print_frames + 1
    lifetime_frames = state.lifetime_frames + 1
    new_state = DetectionState(
        print_frames=print_frames,
        lifetime_frames=lifetime_frames,
        last_evidence=evidence,
        ewm_mean=evidence * p.ewm_alpha + state.ewm_mean * (1.0 - p.ewm_alpha),
        short_mean=_running_mean(state.short_mean, evidence, print_frames, p.short_window),
        long_mean=_running_mean(state.long_mean, evidence, lifetime_frames, p.long_window),
    )
    return new_state, judge(new_state, p)


def smoothed_score(state: DetectionState, params: SmoothingParams) -> SmoothedScore:
    excess_noise = state.short_mean - state.long_mean
    warning_line = min(
        params.threshold_high,
        max(params.threshold_low, excess_noise * params.short_mean_multiple),
    )
    return SmoothedScore(
        evidence=state.last_evidence,
        score=(state.ewm_mean - state.long_mean) * params.sensitivity,
        warning_line=warning_line,
        failure_line=warning_line * params.escalating_factor,
    )


def judge(state: DetectionState, params: SmoothingParams | None = None) -> Verdict:
    """The verdict for the frame ``state`` last took in."""
    p = params or SmoothingParams()
    s = smoothed_score(state, p)
    measurements = {
        "evidence": s.evidence,
        "score": s.score,
        "warning_line": s.warning_line,
        "failure_line": s.failure_line,
        "ewm_mean": state.ewm_mean,
        "short_mean": state.short_mean,
        "long_mean": state.long_mean,
        "print_frames": float(state.print_frames),
    }
    confidence = _normalized_confidence(s)
    if state.print_frames < p.safe_frames:
        reason = (
            f"frame {state.print_frames} of the print: the first {p.safe_frames} frames "
            "are not judged while the averages settle"
        )
        return Verdict(Condition.SPAGHETTI, Severity.OK, confidence, (reason,), measurements)
    line_origin = _warning_line_origin(state, s, p)
    if s.score > s.failure_line:
        reasons = (
            f"the camera model's smoothed failure score {s.score:.2f} is above the "
            f"failure line {s.failure_line:.2f} (warning line {s.warning_line:.2f} × "
            f"{p.escalating_factor:g})",
            line_origin,
        )
        return Verdict(Condition.SPAGHETTI, Severity.FAILURE, confidence, reasons, measurements)
    if s.score > s.warning_line:
        reasons = (
            f"the camera model's smoothed failure score {s.score:.2f} is above the "
            f"warning line {s.warning_line:.2f} but not the failure line "
            f"{s.failure_line:.2f}",
            line_origin,
        )
        return Verdict(Condition.SPAGHETTI, Severity.WARNING, confidence, reasons, measurements)
    reason = (
        f"the camera model's smoothed failure score {s.score:.2f} is below the warning "
        f"line {s.warning_line:.2f}"
    )
    return Verdict(Condition.SPAGHETTI, Severity.OK, confidence, (reason,), measurements)


def _running_mean(mean: float, value: float, count: int, window: int) -> float:
    """The mean of the last ``min(count, window)`` values, approximated once the window is
    full by letting the new value replace an average old one (no history kept)."""
    return mean + (value - mean) / min(count, window)


def _warning_line_origin(state: DetectionState, s: SmoothedScore, p: SmoothingParams) -> str:
    excess = state.short_mean - state.long_mean
    if s.warning_line == p.threshold_low:
        return (
            f"warning line is the minimum {p.threshold_low:g}: this print has not been "
            "noisier than the printer usually is"
        )
    if s.warning_line == p.threshold_high:
        return f"warning line is capped at {p.threshold_high:g}: this print has been noisy"
    return (
        f"warning line is {p.short_mean_multiple:g} × this print's extra noise "
        f"{excess:.3f} over the printer's usual level"
    )


def _normalized_confidence(s: SmoothedScore) -> float:
    """Map the score to 0-1 so that the warning line is 1/3, the failure line 2/3 and 1.5 ×
    the failure line or more is 1 (piecewise linear, as Obico's gauge shows it)."""

    def ramp(value: float, low: float, high: float, out_low: float, out_high: float) -> float:
        fraction = (value - low) / (high - low) if high > low else 1.0
        return out_low + (out_high - out_low) * min(1.0, max(0.0, fraction))

    if s.score > s.failure_line:
        return ramp(s.score, s.failure_line, 1.5 * s.failure_line, 2 / 3, 1.0)
    if s.score > s.warning_line:
        return ramp(s.score, s.warning_line, s.failure_line, 1 / 3, 2 / 3)
    return ramp(s.score, 0.0, s.warning_line, 0.0, 1 / 3)
