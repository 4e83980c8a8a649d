from __future__ import annotations

from typing import Any

import pytest

from kittylab.domain.command_rules import confirms, is_hazardous, precondition_refusal


@pytest.mark.parametrize(
    ("intent", "policy", "expected"),
    [
        ("door_unlock", (), True),
        ("power_on", (), True),
        ("light_on", ("light_on",), False),  # safer actions are never held
        ("print_pause", ("print_pause",), False),
        ("print_start", ("print_start",), True),  # a policy may mark any other intent
        ("print_start", (), False),
    ],
)
def test_hazard_classification(intent: str, policy: tuple[str, ...], expected: bool) -> None:
    assert is_hazardous(intent, policy) is expected


@pytest.mark.parametrize(
    ("intent", "state", "refusal"),
    [
        ("print_pause", {"state": "idle"}, "P is idle, not printing"),
        ("print_resume", {"state": "printing"}, "P is printing, not paused"),
        ("print_start", {"state": "paused"}, "P is paused; finish or cancel the current job first"),
        ("print_cancel", {"state": "completed"}, "P is completed; there is no job to cancel"),
        ("print_pause", {"state": "printing"}, None),
        ("print_pause", None, None),  # unknown state: the printer decides
        ("print_pause", {"state": "warming up"}, None),
    ],
)
def test_printer_preconditions(
    intent: str, state: dict[str, Any] | None, refusal: str | None
) -> None:
    assert precondition_refusal("printer", intent, state, "P") == refusal


def test_other_kinds_have_no_state_preconditions() -> None:
    assert precondition_refusal("light", "light_off", {"on": False}, "L") is None


@pytest.mark.parametrize(
    ("intent", "payload", "before", "after", "expected"),
    [
        ("light_set_brightness", {"brightness": 30}, {}, {"on": True, "brightness": 30}, True),
        ("light_set_brightness", {"brightness": 30}, {}, {"on": True, "brightness": 100}, False),
        ("light_set_brightness", {"brightness": 0}, {}, {"on": False, "brightness": 0}, True),
        ("door_unlock", {}, {}, {"locked": True}, False),
        ("printer_heat", {"nozzle": 215}, {}, {"nozzle": {"actual": 30, "target": 215.0}}, True),
        ("printer_heat", {"nozzle": 215, "bed": 60}, {}, {"nozzle": {"target": 215}}, False),
        ("printer_cooldown", {}, {}, {"nozzle": {"target": 0}, "bed": {"target": 0}}, True),
        (
            "print_start",
            {"file": "jobs/a.gcode"},
            {},
            {"state": "heating", "file": "a.gcode"},
            True,
        ),
        ("print_start", {"file": "a.gcode"}, {}, {"state": "heating", "file": "b.gcode"}, False),
        ("camera_snapshot", {}, {"snapshots_taken": 2}, {"snapshots_taken": 3}, True),
        ("camera_snapshot", {}, {"snapshots_taken": 3}, {"snapshots_taken": 3}, False),
        ("sensor_read", {}, {}, {"temperature": {"value": 21, "unit": "°C"}}, True),
        ("set_colour", {"hue": 3}, {}, {"hue": 3}, False),  # custom intents: no state rule
    ],
)
def test_confirmation_needs_the_state_to_show_the_effect(
    intent: str,
    payload: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    expected: bool,
) -> None:
    assert confirms(intent, payload, before, after) is expected


@pytest.mark.parametrize(
    "after",
    [{"nozzle": {"target": None}}, {"nozzle": {"target": "n/a"}}, {"nozzle": "hot"}],
)
def test_a_garbled_state_confirms_nothing_and_raises_nothing(after: dict[str, Any]) -> None:
    assert confirms("printer_heat", {"nozzle": 215}, {}, after) is False
