"""The pure retry rules of notification delivery: backoff, giving up, finality."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kittylab.config import NotifySettings
from kittylab.domain.enums import NotificationStatus
from kittylab.domain.errors import InvalidTransition
from kittylab.domain.notifications import (
    DeliveryState,
    RetryPolicy,
    email_recipient_problem,
    record_attempt,
)
from kittylab.records.notifications import claim_lease, retry_policy

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts=8, base_delay=timedelta(seconds=10), max_delay=timedelta(seconds=100)
)


def test_backoff_doubles_after_each_failed_attempt_until_the_cap() -> None:
    delays = [POLICY.delay_after(n).total_seconds() for n in range(1, 7)]
    assert delays == [10, 20, 40, 80, 100, 100]


def test_failed_attempt_schedules_the_next_one_after_the_backoff() -> None:
    outcome = record_attempt(NotificationStatus.QUEUED, DeliveryState(), POLICY, NOW, "refused")
    assert outcome.status is NotificationStatus.QUEUED
    assert outcome.state.attempts == 1
    assert outcome.state.next_attempt_at == NOW + timedelta(seconds=10)
    assert outcome.state.last_error == "refused"
    assert outcome.state.errors == [f"{NOW.isoformat()} refused"]


def test_consecutive_failures_space_attempts_exponentially() -> None:
    state, now, gaps = DeliveryState(), NOW, []
    for _ in range(5):
        outcome = record_attempt(NotificationStatus.QUEUED, state, POLICY, now, "timeout")
        state = outcome.state
        assert state.next_attempt_at is not None
        gaps.append((state.next_attempt_at - now).total_seconds())
        now = state.next_attempt_at
    assert gaps == [10, 20, 40, 80, 100]


def test_notification_fails_for_good_on_the_last_allowed_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    state, status = DeliveryState(), NotificationStatus.QUEUED
    for attempt in range(1, 4):
        outcome = record_attempt(status, state, policy, NOW, f"error {attempt}")
        state, status = outcome.state, outcome.status
    assert status is NotificationStatus.FAILED
    assert state.attempts == 3
    assert state.next_attempt_at is None
    assert len(state.errors) == 3


def test_success_after_failures_is_sent_and_keeps_the_error_history() -> None:
    failed = record_attempt(NotificationStatus.QUEUED, DeliveryState(), POLICY, NOW, "refused")
    outcome = record_attempt(failed.status, failed.state, POLICY, NOW, None)
    assert outcome.status is NotificationStatus.SENT
    assert outcome.state.attempts == 2
    assert outcome.state.next_attempt_at is None
    assert outcome.state.errors == failed.state.errors


@pytest.mark.parametrize("final", [NotificationStatus.SENT, NotificationStatus.FAILED])
@pytest.mark.parametrize("error", [None, "refused"])
def test_a_final_notification_accepts_no_further_attempt(
    final: NotificationStatus, error: str | None
) -> None:
    with pytest.raises(InvalidTransition):
        record_attempt(final, DeliveryState(attempts=1), POLICY, NOW, error)


def test_delivery_state_survives_a_round_trip_through_metadata() -> None:
    state = record_attempt(NotificationStatus.QUEUED, DeliveryState(), POLICY, NOW, "refused").state
    assert DeliveryState.from_metadata({"delivery": state.to_metadata()}) == state


def test_retry_policy_comes_from_the_notify_settings() -> None:
    policy = retry_policy(
        NotifySettings(max_attempts=3, base_delay_seconds=0.5, max_delay_seconds=4)
    )
    assert policy == RetryPolicy(3, timedelta(seconds=0.5), timedelta(seconds=4))


def test_a_delivery_claim_outlasts_twice_the_send_timeout() -> None:
    assert claim_lease(NotifySettings(send_timeout_seconds=15)) == timedelta(seconds=60)
    assert claim_lease(NotifySettings(send_timeout_seconds=1)) > timedelta(seconds=2)


@pytest.mark.parametrize("attempts", range(0, 61))
def test_backoff_is_defined_and_capped_for_every_attempt_count(attempts: int) -> None:
    policy = RetryPolicy(base_delay=timedelta(seconds=10), max_delay=timedelta(minutes=30))
    delay = policy.delay_after(attempts)
    assert timedelta(seconds=10) <= delay <= timedelta(minutes=30)
    if attempts >= 9:  # 10 s × 2^8 is past half an hour
        assert delay == timedelta(minutes=30)


def test_the_last_of_fifty_attempts_fails_instead_of_overflowing() -> None:
    policy = RetryPolicy(max_attempts=50)
    state, status = DeliveryState(), NotificationStatus.QUEUED
    for _ in range(50):
        outcome = record_attempt(status, state, policy, NOW, "refused")
        state, status = outcome.state, outcome.status
    assert status is NotificationStatus.FAILED
    assert state.attempts == 50


def test_a_permanent_error_fails_the_notification_on_its_first_attempt() -> None:
    outcome = record_attempt(
        NotificationStatus.QUEUED, DeliveryState(), POLICY, NOW, "no target", permanent=True
    )
    assert outcome.status is NotificationStatus.FAILED
    assert outcome.state.attempts == 1
    assert outcome.state.next_attempt_at is None
    assert outcome.state.last_error == "no target"


@pytest.mark.parametrize(
    "recipient",
    [
        "not an email, x@y.z",
        "ops@lab.example,spy@evil.example",
        "ops@lab.example; spy@evil.example",
        "Ops <ops@lab.example>",
        "ops@localhost",
        "",
    ],
)
def test_an_email_recipient_must_be_exactly_one_valid_address(recipient: str) -> None:
    assert email_recipient_problem(recipient) is not None


def test_a_plain_email_address_is_a_valid_email_recipient() -> None:
    assert email_recipient_problem("ops@lab.example") is None
