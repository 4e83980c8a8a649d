import pytest

from kittylab.domain.enums import (
    CADJobStatus,
    CommandStatus,
    FabricationStatus,
    NotificationStatus,
    SafetyStatus,
)
from kittylab.domain.errors import InvalidTransition
from kittylab.domain.state_machines import (
    CAD_JOB_TRANSITIONS,
    COMMAND_TRANSITIONS,
    FABRICATION_TRANSITIONS,
    NOTIFICATION_TRANSITIONS,
    SAFETY_TRANSITIONS,
    transition,
)

C, F = CommandStatus, FabricationStatus


@pytest.mark.parametrize(
    ("current", "target"),
    [(C.PENDING, C.SENT), (C.SENT, C.ACKED), (C.SENT, C.FAILED), (C.PENDING, C.FAILED)],
)
def test_command_moves_forward_only(current: CommandStatus, target: CommandStatus) -> None:
    assert transition("command", COMMAND_TRANSITIONS, current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (C.PENDING, C.ACKED),
        (C.ACKED, C.SENT),
        (C.FAILED, C.SENT),
        (C.ACKED, C.FAILED),
        (C.SENT, C.PENDING),
    ],
)
def test_command_refuses_skips_and_reversals(current: CommandStatus, target: CommandStatus) -> None:
    with pytest.raises(InvalidTransition):
        transition("command", COMMAND_TRANSITIONS, current, target)


def test_invalid_transition_names_current_and_attempted_state() -> None:
    with pytest.raises(InvalidTransition) as info:
        transition("fabrication job", FABRICATION_TRANSITIONS, F.COMPLETED, F.PRINTING)
    assert str(info.value) == "fabrication job is completed; it cannot move to printing"


def test_fabrication_pause_and_resume_cycle() -> None:
    state = F.PREPARING
    for target in (F.PRINTING, F.PAUSED, F.PRINTING, F.PAUSED, F.PRINTING, F.COMPLETED):
        state = transition("job", FABRICATION_TRANSITIONS, state, target)
    assert state is F.COMPLETED


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (F.PREPARING, F.PAUSED),
        (F.PREPARING, F.COMPLETED),
        (F.PAUSED, F.COMPLETED),
        (F.ABORTED, F.PRINTING),
    ],
)
def test_fabrication_refuses_moves_outside_the_model(current: F, target: F) -> None:
    with pytest.raises(InvalidTransition):
        transition("job", FABRICATION_TRANSITIONS, current, target)


def test_cad_job_runs_before_completing() -> None:
    with pytest.raises(InvalidTransition):
        transition("cad", CAD_JOB_TRANSITIONS, CADJobStatus.QUEUED, CADJobStatus.COMPLETED)
    assert transition("cad", CAD_JOB_TRANSITIONS, CADJobStatus.RUNNING, CADJobStatus.COMPLETED)


def test_safety_event_is_decided_once() -> None:
    transition("safety", SAFETY_TRANSITIONS, SafetyStatus.PENDING, SafetyStatus.APPROVED)
    with pytest.raises(InvalidTransition):
        transition("safety", SAFETY_TRANSITIONS, SafetyStatus.DENIED, SafetyStatus.APPROVED)


def test_notification_final_states_are_final() -> None:
    for final in (NotificationStatus.SENT, NotificationStatus.FAILED):
        with pytest.raises(InvalidTransition):
            transition("n", NOTIFICATION_TRANSITIONS, final, NotificationStatus.QUEUED)
