"""Print-failure rules over printer telemetry (kittylab.domain.print_telemetry_rules)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kittylab.domain.errors import ValidationFailed
from kittylab.domain.gcode_policy import GcodePolicy
from kittylab.domain.print_monitoring import Condition, Severity
from kittylab.domain.print_telemetry_rules import (
    BED_LIMITS,
    HeaterLimits,
    PrinterSample,
    TelemetryRules,
    check_filament_runout,
    check_progress_stall,
    check_temperature_deviation,
    check_temperature_limit,
    check_thermal_runaway,
    evaluate_telemetry,
    trim_history,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def sample(
    seconds: float,
    phase: str = "printing",
    nozzle: tuple[float, float] | None = None,
    bed: tuple[float, float] | None = None,
    progress: float | None = None,
    filament: bool | None = None,
) -> PrinterSample:
    state: dict[str, Any] = {"state": phase}
    if nozzle is not None:
        state["nozzle"] = {"actual": nozzle[0], "target": nozzle[1]}
    if bed is not None:
        state["bed"] = {"actual": bed[0], "target": bed[1]}
    if progress is not None:
        state["progress"] = progress
    if filament is not None:
        state["filament_present"] = filament
    return PrinterSample(T0 + timedelta(seconds=seconds), state)


def nozzle_series(
    readings: list[tuple[float, float, float]], phase: str = "printing"
) -> list[PrinterSample]:
    """(seconds, actual, target) readings of the nozzle."""
    return [sample(t, phase, nozzle=(a, tgt)) for t, a, tgt in readings]


# --- thermal runaway -------------------------------------------------------------------


def test_a_nozzle_heating_normally_is_ok() -> None:
    history = nozzle_series([(t, 25 + 3 * t, 210) for t in range(0, 41, 2)])

    verdict = check_thermal_runaway(history, "nozzle")

    assert verdict.severity is Severity.OK
    assert "heating" in verdict.reasons[0]


def test_a_nozzle_heater_that_does_not_warm_up_is_a_runaway_failure() -> None:
    history = nozzle_series([(t, 25.0 + 0.02 * t, 210) for t in range(0, 31, 2)])

    verdict = check_thermal_runaway(history, "nozzle")

    assert verdict.severity is Severity.FAILURE
    assert verdict.condition is Condition.THERMAL_RUNAWAY
    assert verdict.subject == "nozzle"
    assert "rose only 0.4 °C in 20 s" in verdict.reasons[0]
    assert "210 °C target" in verdict.reasons[0]
    assert 0.6 < verdict.confidence <= 1.0


def test_a_nozzle_falling_while_its_heater_should_be_on_is_a_runaway_failure() -> None:
    at_target = [(t, 210.0, 210) for t in range(0, 60, 5)]
    falling = [(60 + t, 210.0 - 1.0 * t, 210) for t in range(0, 31, 5)]

    verdict = check_thermal_runaway(nozzle_series(at_target + falling), "nozzle")

    assert verdict.severity is Severity.FAILURE
    assert "fell" in verdict.reasons[0]
    assert verdict.confidence == pytest.approx(1.0)


def test_no_heating_verdict_before_the_check_period_has_passed() -> None:
    history = nozzle_series([(0, 25, 210), (10, 25, 210)])

    verdict = check_thermal_runaway(history, "nozzle")

    assert verdict.severity is Severity.OK
    assert "checked after 20 s" in verdict.reasons[0]


def test_a_new_target_restarts_the_heating_check() -> None:
    # Flat at 150 for a while with a 150 target, then the target goes to 210.
    history = nozzle_series(
        [(t, 150, 150) for t in range(0, 60, 5)] + [(60, 150, 210), (70, 152, 210)]
    )

    assert check_thermal_runaway(history, "nozzle").severity is Severity.OK


def test_a_nozzle_near_its_target_is_ok_even_when_flat() -> None:
    history = nozzle_series([(t, 207.0, 210) for t in range(0, 120, 5)])

    assert check_thermal_runaway(history, "nozzle").severity is Severity.OK


def test_a_nozzle_far_above_its_target_and_not_cooling_is_a_runaway_failure() -> None:
    at_target = [(t, 210.0, 210) for t in range(0, 30, 5)]
    one_reading = nozzle_series([*at_target, (30, 230, 210)])
    climbing = nozzle_series([*at_target, (30, 230, 210), (35, 238, 210)])

    assert check_thermal_runaway(one_reading, "nozzle").severity is Severity.OK
    verdict = check_thermal_runaway(climbing, "nozzle")
    assert verdict.severity is Severity.FAILURE
    assert "28.0 °C above its 210 °C target" in verdict.reasons[0]
    assert "not cooling" in verdict.reasons[0]


def test_a_bed_cooling_down_to_a_lowered_target_is_not_a_runaway() -> None:
    first_layer = [sample(t, bed=(100.0, 100)) for t in range(0, 60, 10)]
    later_layers = [sample(60 + t, bed=(100.0 - 0.1 * t, 60)) for t in range(0, 301, 10)]

    for end in range(len(first_layer) + 1, len(first_layer) + len(later_layers) + 1):
        history = (first_layer + later_layers)[:end]
        assert check_thermal_runaway(history, "bed", BED_LIMITS).severity is Severity.OK


def test_a_heater_that_is_off_but_getting_hotter_is_a_runaway_failure() -> None:
    history = nozzle_series([(t, 30.0 + 0.25 * t, 0) for t in range(0, 61, 10)], "idle")

    verdict = check_thermal_runaway(history, "nozzle")

    assert verdict.severity is Severity.FAILURE
    assert "heater is off but its temperature rose 15.0 °C" in verdict.reasons[0]


def test_a_heater_that_is_off_and_cooling_is_ok() -> None:
    history = nozzle_series([(t, 200.0 - t, 0) for t in range(0, 61, 10)], "completed")

    assert check_thermal_runaway(history, "nozzle").severity is Severity.OK


def test_the_bed_gets_a_longer_heating_check_than_the_nozzle() -> None:
    slow = [sample(t, bed=(40.0 + 0.05 * t, 60)) for t in range(0, 71, 5)]
    slower = [sample(t, bed=(40.0 + 0.01 * t, 60)) for t in range(0, 71, 5)]

    # +3 °C a minute is a working bed; the nozzle's 20 s check would call it a runaway.
    assert check_thermal_runaway(slow, "bed", BED_LIMITS).severity is Severity.OK
    assert check_thermal_runaway(slow, "bed").severity is Severity.FAILURE
    assert check_thermal_runaway(slower, "bed", BED_LIMITS).severity is Severity.FAILURE


def test_no_temperature_reported_means_no_runaway_verdict() -> None:
    history = [sample(0), sample(30)]

    verdict = check_thermal_runaway(history, "nozzle")

    assert verdict.severity is Severity.OK
    assert verdict.reasons == ("no nozzle temperature reported",)


# --- temperature deviation -------------------------------------------------------------


def test_a_nozzle_drifting_above_target_past_the_grace_period_is_a_warning() -> None:
    reached = [(t, 210.0, 210) for t in range(0, 60, 10)]
    drifted = [(60 + t, 223.0, 210) for t in range(0, 91, 10)]

    verdict = check_temperature_deviation(nozzle_series(reached + drifted), "nozzle")

    assert verdict.severity is Severity.WARNING
    assert verdict.condition is Condition.TEMPERATURE_DEVIATION
    assert "13.0 °C above it (223.0 °C) for 90 s" in verdict.reasons[0]
    assert verdict.confidence == pytest.approx(1 - 0.5 * 60 / 90)


def test_a_short_drift_within_the_grace_period_is_ok() -> None:
    reached = [(t, 210.0, 210) for t in range(0, 60, 10)]
    drifted = [(60 + t, 223.0, 210) for t in range(0, 31, 10)]

    verdict = check_temperature_deviation(nozzle_series(reached + drifted), "nozzle")

    assert verdict.severity is Severity.OK
    assert "grace period" in verdict.reasons[0]


def test_a_drift_that_came_back_is_ok() -> None:
    readings = [(0, 210.0, 210), (60, 225.0, 210), (130, 225.0, 210), (140, 212.0, 210)]

    assert check_temperature_deviation(nozzle_series(readings), "nozzle").severity is Severity.OK


def test_a_heater_still_warming_up_is_not_a_deviation() -> None:
    history = nozzle_series([(t, 25.0 + t, 210) for t in range(0, 150, 10)])

    verdict = check_temperature_deviation(history, "nozzle")

    assert verdict.severity is Severity.OK
    assert "has not reached" in verdict.reasons[0]


def test_a_heater_that_is_off_is_not_a_deviation() -> None:
    history = nozzle_series([(t, 120.0, 0) for t in range(0, 200, 10)])

    assert check_temperature_deviation(history, "nozzle").severity is Severity.OK


# --- progress stall --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stuck_for", "severity"),
    [(200, Severity.OK), (400, Severity.WARNING), (1000, Severity.FAILURE)],
)
def test_printing_without_progress_warns_then_fails(stuck_for: int, severity: Severity) -> None:
    moving = [sample(t, progress=t / 10000) for t in range(0, 100, 20)]
    stuck = [sample(100 + t, progress=0.42) for t in range(0, stuck_for + 1, 50)]

    verdict = check_progress_stall(moving + stuck)

    assert verdict.severity is severity
    assert verdict.measurements["seconds"] == stuck_for
    if severity.alerts:
        assert "stuck at 42.0 %" in verdict.reasons[0]


def test_a_pause_restarts_the_stall_clock() -> None:
    before = [sample(t, progress=0.42) for t in range(0, 401, 50)]
    paused = [sample(450, "paused", progress=0.42)]
    after = [sample(500 + t, progress=0.42) for t in range(0, 201, 50)]

    verdict = check_progress_stall(before + paused + after)

    assert verdict.severity is Severity.OK
    assert verdict.measurements["seconds"] == 200


def test_a_finished_file_waiting_at_full_progress_is_not_a_stall() -> None:
    history = [sample(t, progress=1.0) for t in range(0, 1200, 60)]

    verdict = check_progress_stall(history)

    assert verdict.severity is Severity.OK
    assert verdict.reasons == ("the whole file has been sent",)


def test_progress_that_keeps_moving_is_ok() -> None:
    history = [sample(t, progress=t / 100000) for t in range(0, 2000, 30)]

    assert check_progress_stall(history).severity is Severity.OK


@pytest.mark.parametrize(
    "history",
    [
        [sample(t, "paused", progress=0.4) for t in range(0, 2000, 100)],
        [sample(t) for t in range(0, 2000, 100)],
        [],
    ],
)
def test_no_stall_verdict_when_not_printing_or_without_progress(
    history: list[PrinterSample],
) -> None:
    assert check_progress_stall(history).severity is Severity.OK


# --- filament runout -------------------------------------------------------------------


def test_no_filament_on_consecutive_readings_while_printing_is_a_failure() -> None:
    history = [sample(0, filament=True), sample(5, filament=False), sample(10, filament=False)]

    verdict = check_filament_runout(history)

    assert verdict.severity is Severity.FAILURE
    assert verdict.condition is Condition.FILAMENT_RUNOUT
    assert "no filament (2 readings in a row)" in verdict.reasons[0]
    assert verdict.confidence == pytest.approx(0.75)


def test_a_single_no_filament_reading_waits_for_confirmation() -> None:
    history = [sample(0, filament=True), sample(5, filament=False)]

    verdict = check_filament_runout(history)

    assert verdict.severity is Severity.OK
    assert "waiting for 2 readings in a row" in verdict.reasons[0]


def test_no_filament_while_paused_or_without_a_sensor_is_ok() -> None:
    paused = [sample(0, "paused", filament=False), sample(5, "paused", filament=False)]
    no_sensor = [sample(0), sample(5)]

    assert check_filament_runout(paused).severity is Severity.OK
    assert check_filament_runout(no_sensor).reasons == ("the printer has no runout sensor",)


# --- all rules together ----------------------------------------------------------------


def test_evaluate_runs_every_rule_on_a_shuffled_history() -> None:
    history = [
        sample(t, nozzle=(210.0, 210), bed=(60.0, 60), progress=0.1 + t / 10000, filament=True)
        for t in range(0, 300, 10)
    ]
    history += [sample(300, nozzle=(210.0, 210), bed=(60.0, 60), progress=0.2, filament=False)]
    history += [sample(310, nozzle=(210.0, 210), bed=(60.0, 60), progress=0.2, filament=False)]
    random.Random(2).shuffle(history)

    verdicts = evaluate_telemetry(history)

    assert {(v.condition, v.subject) for v in verdicts} == {
        (Condition.TEMPERATURE_LIMIT, "nozzle"),
        (Condition.TEMPERATURE_LIMIT, "bed"),
        (Condition.THERMAL_RUNAWAY, "nozzle"),
        (Condition.THERMAL_RUNAWAY, "bed"),
        (Condition.TEMPERATURE_DEVIATION, "nozzle"),
        (Condition.TEMPERATURE_DEVIATION, "bed"),
        (Condition.PROGRESS_STALL, None),
        (Condition.FILAMENT_RUNOUT, None),
    }
    alerts = [v for v in verdicts if v.severity.alerts]
    assert [(v.condition, v.severity) for v in alerts] == [
        (Condition.FILAMENT_RUNOUT, Severity.FAILURE)
    ]
    assert json.dumps([v.details() for v in verdicts])


def test_malformed_readings_are_unknown_not_zero() -> None:
    weird = PrinterSample(
        T0,
        {"state": "printing", "nozzle": {"actual": "hot", "target": 210}, "progress": True},
    )

    assert weird.temperature("nozzle") is None
    assert weird.progress is None
    assert {v.severity for v in evaluate_telemetry([weird])} == {Severity.OK}


def test_trim_history_keeps_the_window_and_the_newest_older_sample() -> None:
    history = [sample(t) for t in range(0, 1000, 100)]

    kept = trim_history(reversed(history), now=T0 + timedelta(seconds=950), keep_seconds=300)

    assert [s.at for s in kept] == [T0 + timedelta(seconds=t) for t in (600, 700, 800, 900)]


def test_the_default_rules_need_fifteen_minutes_of_history() -> None:
    assert TelemetryRules().history_seconds == 900


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: HeaterLimits(hysteresis_c=0), "hysteresis_c"),
        (lambda: HeaterLimits(heating_check_s=float("nan")), "heating_check_s"),
        (lambda: TelemetryRules(stall_warning_s=600, stall_failure_s=300), "stall_failure_s"),
        (lambda: TelemetryRules(runout_consecutive_readings=0), "runout_consecutive_readings"),
    ],
)
def test_invalid_rule_parameters_are_refused_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        build()

    assert e.value.field == field


# --- the printer's declared limit ----------------------------------------------------


def test_a_steady_480_c_nozzle_is_a_failure_although_it_holds_its_target() -> None:
    steady = nozzle_series([(t, 480.0, 480) for t in range(0, 200, 10)])
    runaway = check_thermal_runaway(steady, "nozzle")
    assert runaway.severity is Severity.OK  # it holds its target: no runaway

    failing = [v for v in evaluate_telemetry(steady) if v.severity.alerts]

    assert [(v.condition, v.subject, v.severity) for v in failing] == [
        (Condition.TEMPERATURE_LIMIT, "nozzle", Severity.FAILURE)
    ]
    assert failing[0].reasons == (
        "nozzle target is 480 °C, above this printer's 300 °C limit (480.0 °C now): whatever "
        "set it, the printer must not go there",
    )
    assert failing[0].details()["measurements"] == {
        "actual_c": 480.0,
        "target_c": 480.0,
        "limit_c": 300.0,
    }


def test_a_target_past_the_limit_fails_at_once_and_a_temperature_past_its_margin() -> None:
    cold_but_told = [sample(0, bed=(25.0, 111))]
    assert check_temperature_limit(cold_but_told, "bed", 110).severity is Severity.FAILURE
    at_limit = [sample(0, bed=(113.0, 110))]  # overshoot within the 5 °C margin
    assert check_temperature_limit(at_limit, "bed", 110).severity is Severity.OK
    past = [sample(0, bed=(90.0, 90)), sample(10, bed=(115.5, 90))]  # heater stuck on
    verdict = check_temperature_limit(past, "bed", 110)
    assert verdict.severity is Severity.FAILURE
    assert verdict.reasons == (
        "bed is at 115.5 °C, above this printer's 110 °C limit (by more than the 5 °C a "
        "heater may overshoot)",
    )
    assert check_temperature_limit(past, "bed", 110, margin_c=10).severity is Severity.OK


def test_each_heater_is_held_to_the_printers_own_policy() -> None:
    history = [
        PrinterSample(
            T0,
            {
                "state": "printing",
                "nozzle": {"actual": 250.0, "target": 250},
                "bed": {"actual": 60.0, "target": 60},
                "chamber": {"actual": 66.0, "target": 65},
            },
        )
    ]
    policy = GcodePolicy(max_nozzle_c=240, max_bed_c=100, max_chamber_c=60)

    failing = [v.subject for v in evaluate_telemetry(history, policy=policy) if v.severity.alerts]

    assert failing == ["nozzle", "chamber"]
    assert not [v for v in evaluate_telemetry(history) if v.severity.alerts]  # the defaults


def test_a_printer_reporting_no_chamber_gets_no_chamber_verdict() -> None:
    assert check_temperature_limit([sample(0, nozzle=(200.0, 200))], "chamber", 60) is None
    with pytest.raises(ValidationFailed):
        TelemetryRules(limit_margin_c=-1)
