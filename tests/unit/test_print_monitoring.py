"""Obico-style temporal smoothing of camera detections (kittylab.domain.print_monitoring)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from kittylab.domain.enums import MonitorEventType
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.print_monitoring import (
    BoundingBox,
    Condition,
    Detection,
    DetectionState,
    Severity,
    SmoothingParams,
    Verdict,
    judge,
    start_new_print,
    update,
)

BOX = BoundingBox(320.0, 240.0, 80.0, 60.0)


def printer_with_clean_history(frames: int = 500) -> DetectionState:
    """A printer whose earlier prints looked clean, at the start of a new print. (On a
    brand-new printer the long-term baseline *is* the current print, so a print that fails
    from its very first frame cannot stand out; Obico behaves the same.)"""
    state, _ = run(DetectionState(), [[]] * frames)
    return start_new_print(state)


def frame(*confidences: float, label: str = "failure") -> list[Detection]:
    return [Detection(label, c, BOX) for c in confidences]


def run(
    state: DetectionState, frames: list[list[Detection]], params: SmoothingParams | None = None
) -> tuple[DetectionState, list[Verdict]]:
    verdicts = []
    for detections in frames:
        state, verdict = update(state, detections, params)
        verdicts.append(verdict)
    return state, verdicts


def noise(
    rng: random.Random, frames: int, max_boxes: int = 3, max_conf: float = 0.35
) -> list[list[Detection]]:
    """What a camera model says about a healthy print: a few weak boxes, often none."""
    return [
        frame(*(rng.uniform(0.08, max_conf) for _ in range(rng.randint(0, max_boxes))))
        for _ in range(frames)
    ]


def obico_is_failing(state: DetectionState, p: SmoothingParams, escalating_factor: float) -> bool:
    """Obico's published decision, restated as the test oracle: too early → no; the
    adjusted score below the low threshold → no; above the high threshold → yes; above the
    multiple of the print's excess noise → yes."""
    if state.print_frames < p.safe_frames:
        return False
    adjusted = (state.ewm_mean - state.long_mean) * p.sensitivity / escalating_factor
    if adjusted < p.threshold_low:
        return False
    if adjusted > p.threshold_high:
        return True
    return adjusted > (state.short_mean - state.long_mean) * p.short_mean_multiple


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_steady_noise_never_alerts(seed: int) -> None:
    rng = random.Random(seed)

    _, verdicts = run(DetectionState(), noise(rng, 1500))

    assert {v.severity for v in verdicts} == {Severity.OK}
    assert max(v.confidence for v in verdicts) < 1 / 3


def test_a_sustained_rise_alerts_warning_first_then_failure_and_stays_failing() -> None:
    state, _ = run(DetectionState(), noise(random.Random(7), 100))

    _, verdicts = run(state, [frame(0.9, 0.8)] * 20)
    severities = [v.severity for v in verdicts]

    first_alert = next(i for i, s in enumerate(severities) if s.alerts)
    first_failure = severities.index(Severity.FAILURE)
    assert severities[first_alert] is Severity.WARNING
    assert first_alert < first_failure <= 6  # frames are ~10 s apart: within a minute
    assert set(severities[first_failure:]) == {Severity.FAILURE}
    failure = verdicts[first_failure]
    assert failure.condition is Condition.SPAGHETTI
    assert failure.confidence >= 2 / 3
    assert "above the failure line" in failure.reasons[0]


def test_a_single_spike_does_not_alert() -> None:
    state, _ = run(DetectionState(), noise(random.Random(11), 100))

    _, verdicts = run(state, [frame(0.95, 0.85)] + [[]] * 20)

    assert {v.severity for v in verdicts} == {Severity.OK}


def test_one_frame_never_pauses_a_print_even_when_it_is_full_of_boxes() -> None:
    state, _ = run(DetectionState(), [[]] * 100)

    # 3.6 summed confidence: enough to warn (0.15 × 3.6 ≈ 0.55 > 0.38), not to fail (0.665).
    _, verdicts = run(state, [frame(0.9, 0.9, 0.9, 0.9)] + [[]] * 10)

    assert verdicts[0].severity is Severity.WARNING
    assert Severity.FAILURE not in {v.severity for v in verdicts}
    assert verdicts[-1].severity is Severity.OK  # and the warning fades by itself


def test_the_first_frames_of_a_print_are_never_judged() -> None:
    _, verdicts = run(printer_with_clean_history(), [frame(1.0, 1.0, 1.0)] * 31)

    assert {v.severity for v in verdicts[:29]} == {Severity.OK}
    assert "not judged" in verdicts[0].reasons[0]
    assert verdicts[29].severity is Severity.FAILURE  # frame 30 is the first judged


def test_the_number_of_unjudged_frames_is_a_parameter() -> None:
    params = SmoothingParams(safe_frames=5)

    _, verdicts = run(printer_with_clean_history(), [frame(1.0, 1.0, 1.0)] * 6, params)

    assert [v.severity for v in verdicts[:4]] == [Severity.OK] * 4
    assert verdicts[4].severity is Severity.FAILURE


def test_a_new_print_starts_over_but_keeps_the_printers_baseline() -> None:
    failing, _ = run(DetectionState(), noise(random.Random(3), 200) + [frame(0.9, 0.9)] * 10)
    assert judge(failing).severity is Severity.FAILURE

    fresh = start_new_print(failing)

    assert (fresh.print_frames, fresh.ewm_mean, fresh.short_mean, fresh.last_evidence) == (
        0,
        0.0,
        0.0,
        0.0,
    )
    assert fresh.lifetime_frames == failing.lifetime_frames == 210
    assert fresh.long_mean == failing.long_mean
    _, verdicts = run(fresh, [frame(0.9, 0.9)] * 29)
    assert {v.severity for v in verdicts} == {Severity.OK}


def test_a_printer_that_is_always_noisy_needs_a_bigger_rise() -> None:
    # The same print on two printers: 100 quiet frames, then ten at 0.7 summed confidence.
    quiet_printer, _ = run(DetectionState(), [[]] * 3000)
    noisy_printer, _ = run(DetectionState(), [frame(0.3)] * 3000)
    a_print = [[]] * 100 + [frame(0.4, 0.3)] * 10

    _, on_quiet = run(start_new_print(quiet_printer), a_print)
    _, on_noisy = run(start_new_print(noisy_printer), a_print)

    assert on_quiet[-1].severity is Severity.WARNING
    assert on_noisy[-1].severity is Severity.OK
    assert on_noisy[-1].measurements["long_mean"] == pytest.approx(0.29, abs=0.01)


def test_a_print_that_looks_the_same_from_its_first_frame_raises_its_own_bar() -> None:
    # Obico's design: a print that has scored high all along (a busy bed, a textured
    # plate) lifts its warning line up to the high threshold instead of alerting forever.
    _, verdicts = run(printer_with_clean_history(3000), [frame(0.3, 0.3)] * 100)

    assert verdicts[-1].severity is Severity.OK
    assert verdicts[-1].measurements["warning_line"] == pytest.approx(0.78)


def test_a_print_noisier_than_usual_raises_the_warning_line() -> None:
    calm = DetectionState(
        print_frames=100, lifetime_frames=5000, ewm_mean=0.5, short_mean=0.05, long_mean=0.05
    )
    noisy = replace(calm, short_mean=0.2)  # 0.15 above usual × 3.8 = 0.57

    assert judge(calm).severity is Severity.WARNING
    assert judge(calm).measurements["warning_line"] == pytest.approx(0.38)
    assert judge(noisy).severity is Severity.OK
    assert judge(noisy).measurements["warning_line"] == pytest.approx(0.57)
    assert "extra noise" in judge(replace(noisy, ewm_mean=0.7)).reasons[1]


def test_the_warning_line_is_capped_at_the_high_threshold() -> None:
    very_noisy = DetectionState(
        print_frames=100, lifetime_frames=5000, ewm_mean=0.9, short_mean=0.5, long_mean=0.05
    )

    verdict = judge(very_noisy)

    assert verdict.measurements["warning_line"] == pytest.approx(0.78)
    assert verdict.measurements["failure_line"] == pytest.approx(0.78 * 1.75)
    assert verdict.severity is Severity.WARNING


@pytest.mark.parametrize("seed", range(20))
def test_the_decision_matches_obicos_two_step_test_on_random_states(seed: int) -> None:
    rng = random.Random(seed)
    params = SmoothingParams(sensitivity=rng.choice([0.5, 1.0, 1.5]))
    for _ in range(200):
        long_mean = rng.uniform(0, 0.4)
        state = DetectionState(
            print_frames=rng.randint(0, 400),
            lifetime_frames=8000,
            ewm_mean=rng.uniform(0, 2.5),
            short_mean=rng.uniform(0, 0.6),
            long_mean=long_mean,
        )
        fails = obico_is_failing(state, params, params.escalating_factor)
        warns = not fails and obico_is_failing(state, params, 1.0)
        expected = Severity.FAILURE if fails else Severity.WARNING if warns else Severity.OK

        assert judge(state, params).severity is expected, state


def test_sensitivity_scales_the_score() -> None:
    state = DetectionState(
        print_frames=100, lifetime_frames=100, ewm_mean=0.3, short_mean=0.0, long_mean=0.0
    )

    assert judge(state).severity is Severity.OK
    assert judge(state, SmoothingParams(sensitivity=2.0)).severity is Severity.WARNING
    assert judge(state, SmoothingParams(sensitivity=3.0)).severity is Severity.FAILURE


def test_confidence_scale_and_label_filter_shape_the_evidence() -> None:
    detections = frame(0.5) + frame(0.4, label="shadow")

    _, plain = update(DetectionState(), detections)
    _, scaled = update(DetectionState(), detections, SmoothingParams(confidence_scale=0.5))
    _, filtered = update(
        DetectionState(), detections, SmoothingParams(failure_labels=frozenset({"failure"}))
    )

    assert plain.measurements["evidence"] == pytest.approx(0.9)
    assert scaled.measurements["evidence"] == pytest.approx(0.45)
    assert filtered.measurements["evidence"] == pytest.approx(0.5)


def test_an_empty_frame_is_a_clean_frame_that_pulls_the_score_down() -> None:
    state, _ = run(DetectionState(), [frame(0.9)] * 10)

    after, _ = update(state, [])

    assert after.ewm_mean < state.ewm_mean
    assert after.last_evidence == 0.0
    assert after.print_frames == 11


def test_confidence_maps_the_lines_to_thirds_and_stays_in_range() -> None:
    base = DetectionState(print_frames=100, lifetime_frames=100, short_mean=0.0, long_mean=0.0)

    def confidence(ewm: float) -> float:
        return judge(replace(base, ewm_mean=ewm)).confidence

    assert confidence(0.0) == 0.0
    assert confidence(0.38) == pytest.approx(1 / 3)
    assert confidence(0.665) == pytest.approx(2 / 3)
    assert confidence(0.9975) == pytest.approx(1.0)
    assert confidence(5.0) == 1.0
    values = [confidence(x / 100) for x in range(0, 300)]
    assert values == sorted(values)
    assert all(0.0 <= v <= 1.0 for v in values)


def test_state_round_trips_through_a_json_object() -> None:
    state, _ = run(DetectionState(), noise(random.Random(5), 50))

    restored = DetectionState.from_dict(json.loads(json.dumps(state.as_dict())))

    assert restored == state


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"print_frames": -1}, "print_frames"),
        ({"lifetime_frames": 1.5}, "lifetime_frames"),
        ({"ewm_mean": "0.3"}, "ewm_mean"),
        ({"long_mean": float("nan")}, "long_mean"),
        ({"short_mean": True}, "short_mean"),
    ],
)
def test_a_malformed_saved_state_is_refused_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    saved = {**DetectionState().as_dict(), **change}

    with pytest.raises(ValidationFailed) as e:
        DetectionState.from_dict(saved)

    assert e.value.field == field


def test_a_saved_state_missing_a_field_is_refused() -> None:
    saved = DetectionState().as_dict()
    del saved["long_mean"]

    with pytest.raises(ValidationFailed, match="long_mean"):
        DetectionState.from_dict(saved)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"ewm_span": 0.5}, "ewm_span"),
        ({"short_window": 0}, "short_window"),
        ({"long_window": 0.5}, "long_window"),
        ({"threshold_low": 0}, "threshold_low"),
        ({"threshold_low": 0.5, "threshold_high": 0.4}, "threshold_high"),
        ({"escalating_factor": 0.9}, "escalating_factor"),
        ({"safe_frames": -1}, "safe_frames"),
        ({"sensitivity": float("inf")}, "sensitivity"),
        ({"confidence_scale": -1}, "confidence_scale"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_field(
    params: dict[str, float], field: str
) -> None:
    with pytest.raises(ValidationFailed) as e:
        SmoothingParams(**params)  # type: ignore[arg-type]

    assert e.value.field == field


def test_the_defaults_are_obicos_published_constants() -> None:
    p = SmoothingParams()

    assert p.ewm_alpha == pytest.approx(2 / 13)
    assert (p.short_window, p.long_window, p.safe_frames) == (310, 7200, 30)
    assert (p.threshold_low, p.threshold_high) == (0.38, 0.78)
    assert (p.short_mean_multiple, p.escalating_factor) == (3.8, 1.75)


@pytest.mark.parametrize("confidence", [-0.1, 1.01, float("nan")])
def test_a_detection_confidence_must_be_a_probability(confidence: float) -> None:
    with pytest.raises(ValidationFailed):
        Detection("failure", confidence, BOX)


def test_verdict_details_are_a_json_object_for_the_event_record() -> None:
    state, _ = run(printer_with_clean_history(), [frame(0.9, 0.9)] * 35)
    verdict = judge(state)

    details = json.loads(json.dumps(verdict.details()))

    assert details["condition"] == "spaghetti"
    assert details["severity"] == "failure"
    assert details["reasons"] == list(verdict.reasons)
    assert details["measurements"]["print_frames"] == 35


def test_camera_failures_are_recorded_as_spaghetti_and_telemetry_ones_as_nozzle_clog() -> None:
    assert Condition.SPAGHETTI.failure_event_type is MonitorEventType.SPAGHETTI_DETECTED
    for condition in Condition:
        assert condition.failure_event_type.is_failure
