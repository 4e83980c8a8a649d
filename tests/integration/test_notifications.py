"""Durable notifications and background jobs, end to end: real PostgreSQL, a real SMTP
server (aiosmtpd), a real HTTP receiver, and the procrastinate worker."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADJob,
    ConversationSession,
    Notification,
    RoutingDecision,
)
from kittylab.adapters.jobs import JobQueueUnavailable, ProcrastinateQueue
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.api.routers.notifications import mask_recipient
from kittylab.config import JobSettings, NotifySettings, Settings
from kittylab.conversation import sessions
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADPolicyMode, NotificationChannel, NotificationStatus, Tier
from kittylab.domain.errors import Conflict, ValidationFailed
from kittylab.domain.notifications import RetryPolicy, webhook_host_allowed
from kittylab.records import notifications
from kittylab.records.notifications import DeliveryOutcome, DeliveryResult
from kittylab.records.ports import DeliveryFailed
from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import JobContext
from tests.integration.cad_failures import generate_with_a_starved_worker, give_email
from tests.integration.conftest import Person
from tests.integration.worker_runner import run_worker_until

pytestmark = pytest.mark.postgres

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def message(self, index: int = 0) -> Message:
        return email.message_from_bytes(self.envelopes[index].content)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[tuple[str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    """A tiny HTTP server that records JSON POSTs and answers 200."""
    received: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    receiver = Receiver(server.server_address[1])
    receiver.requests = received
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections are refused at once."""
    return _free_port()


@pytest.fixture
def notify_settings(smtp_server: tuple[Inbox, int]) -> NotifySettings:
    _, port = smtp_server
    return NotifySettings(
        email_url=SecretStr(
            f"mailto://127.0.0.1:{port}?from=kittylab@lab.example&to={{recipient}}&mode=insecure"
        ),
        max_attempts=3,
        base_delay_seconds=30,
        max_delay_seconds=600,
        send_timeout_seconds=5,
        webhook_hosts=["127.0.0.1"],
    )


@pytest.fixture
def sender(notify_settings: NotifySettings) -> AppriseSender:
    return AppriseSender(notify_settings)


@pytest.fixture
def job_context(
    database: Database, sender: AppriseSender, notify_settings: NotifySettings, tmp_path: Path
) -> JobContext:
    settings = Settings(
        data_dir=tmp_path,
        notify=notify_settings,
        jobs=JobSettings(poll_interval_seconds=0.2),
        _env_file=None,
    )
    return JobContext(database=database, sender=sender, settings=settings, clock=utcnow)


POLICY = RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=30))


def _at(moment: datetime) -> Callable[[], datetime]:
    """A clock that stays at ``moment``: the attempt takes no time."""
    return lambda: moment


class SteppingClock:
    """A clock that moves only when told to, as a slow send would move it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def _enqueue(
    database: Database,
    channel: NotificationChannel,
    recipient: str,
    *,
    title: str = "Print finished",
    body: str = "Benchy on printer-1 is done.",
) -> UUID:
    with database.unit_of_work() as session:
        return notifications.enqueue(
            session, channel=channel, recipient=recipient, title=title, body=body
        ).id


def _row(database: Database, notification_id: UUID) -> Notification:
    with database.unit_of_work() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        return row


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("kittylab_notifications_total", {"outcome": outcome})
    return value or 0.0


def test_email_notification_reaches_the_smtp_server(
    database: Database, sender: AppriseSender, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    notification_id = _enqueue(database, NotificationChannel.EMAIL, "ops@lab.example")
    sent_before = _count("sent")

    result = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert result.outcome is DeliveryOutcome.SENT
    assert not result.should_retry
    assert len(inbox.envelopes) == 1
    assert inbox.envelopes[0].rcpt_tos == ["ops@lab.example"]
    assert inbox.message()["Subject"] == "Print finished"
    assert "Benchy on printer-1 is done." in inbox.envelopes[0].content.decode()
    row = _row(database, notification_id)
    assert row.status is NotificationStatus.SENT
    assert row.sent_at == NOW
    assert row.metadata_["delivery"]["attempts"] == 1
    assert _count("sent") == sent_before + 1


def test_webhook_notification_posts_json_to_the_receiver(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)

    result = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert result.outcome is DeliveryOutcome.SENT
    [(path, payload)] = webhook_receiver.requests
    assert path == "/hook"
    assert payload["title"] == "Print finished"
    assert payload["message"] == "Benchy on printer-1 is done."


def test_unreachable_target_is_retried_with_backoff_and_then_fails(
    database: Database, sender: AppriseSender, closed_port: int
) -> None:
    recipient = f"json://127.0.0.1:{closed_port}/hook"
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, recipient)
    retries_before, failures_before = _count("retry"), _count("failed")

    first = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert first.outcome is DeliveryOutcome.RETRY
    assert first.retry_in == timedelta(seconds=30)
    delivery = _row(database, notification_id).metadata_["delivery"]
    assert delivery["attempts"] == 1
    assert datetime.fromisoformat(delivery["next_attempt_at"]) == NOW + timedelta(seconds=30)
    assert "connection error" in delivery["last_error"].lower()

    early = notifications.deliver(
        database, sender, notification_id, clock=_at(NOW + timedelta(seconds=5)), policy=POLICY
    )
    assert early.outcome is DeliveryOutcome.NOT_DUE
    assert early.retry_in == timedelta(seconds=25)
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1

    second = notifications.deliver(
        database, sender, notification_id, clock=_at(NOW + timedelta(seconds=30)), policy=POLICY
    )
    assert second.outcome is DeliveryOutcome.RETRY
    assert second.retry_in == timedelta(seconds=60)

    last = notifications.deliver(
        database, sender, notification_id, clock=_at(NOW + timedelta(seconds=90)), policy=POLICY
    )
    assert last.outcome is DeliveryOutcome.FAILED
    assert not last.should_retry
    row = _row(database, notification_id)
    assert row.status is NotificationStatus.FAILED
    assert row.sent_at is None
    assert row.metadata_["delivery"]["attempts"] == 3
    assert row.metadata_["delivery"]["next_attempt_at"] is None
    assert len(row.metadata_["delivery"]["errors"]) == 3
    assert _count("retry") == retries_before + 2
    assert _count("failed") == failures_before + 1


def test_delivering_a_sent_notification_again_sends_nothing(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    again = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert again.outcome is DeliveryOutcome.SKIPPED
    assert len(webhook_receiver.requests) == 1
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1


@pytest.mark.parametrize(
    ("channel", "recipient"),
    [
        (NotificationChannel.EMAIL, "not an email, x@y.z"),
        (NotificationChannel.SLACK, "#lab-alerts"),  # no slack template configured
    ],
)
def test_a_notification_that_can_never_be_sent_fails_on_its_first_attempt(
    database: Database,
    sender: AppriseSender,
    smtp_server: tuple[Inbox, int],
    channel: NotificationChannel,
    recipient: str,
) -> None:
    inbox, _ = smtp_server
    notification_id = _enqueue(database, channel, recipient)

    result = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert result.outcome is DeliveryOutcome.FAILED
    assert not result.should_retry
    row = _row(database, notification_id)
    assert row.status is NotificationStatus.FAILED
    assert row.metadata_["delivery"]["attempts"] == 1
    assert row.metadata_["delivery"]["next_attempt_at"] is None
    assert inbox.envelopes == []


def test_backoff_runs_from_the_end_of_a_slow_attempt(database: Database, closed_port: int) -> None:
    notification_id = _enqueue(
        database, NotificationChannel.WEBHOOK, f"json://127.0.0.1:{closed_port}/hook"
    )
    clock = SteppingClock(NOW)

    def slow_failure() -> None:
        clock.advance(timedelta(seconds=45))  # longer than the 30 s base delay
        raise DeliveryFailed("timed out")

    result = notifications.deliver(
        database, CallbackSender(slow_failure), notification_id, clock=clock, policy=POLICY
    )

    assert result.outcome is DeliveryOutcome.RETRY
    assert result.retry_in == timedelta(seconds=30)
    delivery = _row(database, notification_id).metadata_["delivery"]
    assert datetime.fromisoformat(delivery["next_attempt_at"]) == NOW + timedelta(seconds=75)
    with database.unit_of_work() as session:
        assert notifications.due_for_delivery(session, NOW + timedelta(seconds=60), 10) == []


def test_a_slow_successful_send_is_stamped_when_it_ended(
    database: Database, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    clock = SteppingClock(NOW)

    result = notifications.deliver(
        database,
        CallbackSender(lambda: clock.advance(timedelta(seconds=45))),
        notification_id,
        clock=clock,
        policy=POLICY,
    )

    assert result.outcome is DeliveryOutcome.SENT
    assert _row(database, notification_id).sent_at == NOW + timedelta(seconds=45)


def _enqueue_keyed(
    session: Session, *, recipient: str = "ops@lab.example", requested_by: UUID | None = None
) -> Notification:
    return notifications.enqueue(
        session,
        channel=NotificationChannel.EMAIL,
        recipient=recipient,
        title="Door unlocked",
        body="token=kl_abcdefghijklmnopqrstuvwxyz was used",
        idempotency_key="unlock-42",
        requested_by=requested_by,
    )


def test_repeating_a_request_with_its_idempotency_key_returns_the_existing_notification(
    database: Database,
) -> None:
    with database.unit_of_work() as session:
        first = _enqueue_keyed(session)
    with database.unit_of_work() as session:
        second = _enqueue_keyed(session)
        count = len(session.scalars(select(Notification)).all())

    assert second.id == first.id
    assert count == 1
    assert "kl_abcdefghijklmnopqrstuvwxyz" not in first.payload["body"]


def test_reusing_an_idempotency_key_for_a_different_message_is_a_conflict(
    database: Database,
) -> None:
    with database.unit_of_work() as session:
        first = _enqueue_keyed(session)
    with database.unit_of_work() as session, pytest.raises(Conflict) as caught:
        _enqueue_keyed(session, recipient="someone-else@lab.example")

    assert caught.value.field == "idempotencyKey"
    with database.unit_of_work() as session:
        assert session.scalars(select(Notification.id)).all() == [first.id]


def test_idempotency_keys_of_different_requesters_never_meet(
    database: Database, admin: Person, safety_lead: Person
) -> None:
    with database.unit_of_work() as session:
        internal = _enqueue_keyed(session)
        mine = _enqueue_keyed(session, requested_by=admin.user_id)
        theirs = _enqueue_keyed(
            session, recipient="other@lab.example", requested_by=safety_lead.user_id
        )

    assert len({internal.id, mine.id, theirs.id}) == 3
    assert (mine.requested_by, theirs.requested_by) == (admin.user_id, safety_lead.user_id)
    assert theirs.recipient == "other@lab.example"


def test_due_for_delivery_lists_queued_notifications_whose_attempt_is_due(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver, closed_port: int
) -> None:
    fresh = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    backing_off = _enqueue(
        database, NotificationChannel.WEBHOOK, f"json://127.0.0.1:{closed_port}/"
    )
    sent = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    notifications.deliver(database, sender, backing_off, clock=_at(NOW), policy=POLICY)
    notifications.deliver(database, sender, sent, clock=_at(NOW), policy=POLICY)

    with database.unit_of_work() as session:
        now_due = notifications.due_for_delivery(session, NOW, limit=10)
        later_due = notifications.due_for_delivery(session, NOW + timedelta(seconds=30), limit=10)

    assert now_due == [fresh]
    assert later_due == [fresh, backing_off]


def test_channel_without_configuration_is_a_permanent_error_naming_its_setting() -> None:
    sender = AppriseSender(NotifySettings())
    with pytest.raises(DeliveryFailed, match="KITTYLAB_NOTIFY__EMAIL_URL") as email_error:
        sender.send(NotificationChannel.EMAIL, "ops@lab.example", "t", "b")
    with pytest.raises(DeliveryFailed, match="KITTYLAB_NOTIFY__SLACK_URL") as slack_error:
        sender.send(NotificationChannel.SLACK, "#lab", "t", "b")
    assert email_error.value.permanent
    assert slack_error.value.permanent


def test_bare_webhook_recipient_must_be_an_http_apprise_url() -> None:
    sender = AppriseSender(NotifySettings())
    with pytest.raises(DeliveryFailed, match="json://"):
        sender.send(NotificationChannel.WEBHOOK, "mailto://evil.example?to=x@y.example", "t", "b")


@pytest.mark.parametrize(
    "recipient", ["ops@lab.example,spy@evil.example", "not an email, x@y.z", "Ops <o@lab.example>"]
)
def test_email_recipient_must_be_one_valid_address_or_fail_permanently(
    notify_settings: NotifySettings, smtp_server: tuple[Inbox, int], recipient: str
) -> None:
    inbox, _ = smtp_server
    sender = AppriseSender(notify_settings)
    with pytest.raises(DeliveryFailed, match="single valid email address") as caught:
        sender.send(NotificationChannel.EMAIL, recipient, "t", "b")
    assert caught.value.permanent
    assert inbox.envelopes == []


def test_a_failed_send_is_not_a_permanent_error(closed_port: int) -> None:
    sender = AppriseSender(NotifySettings(webhook_hosts=["127.0.0.1"], send_timeout_seconds=2))
    with pytest.raises(DeliveryFailed) as caught:
        sender.send(NotificationChannel.WEBHOOK, f"json://127.0.0.1:{closed_port}/hook", "t", "b")
    assert not caught.value.permanent


def test_a_target_that_never_answers_fails_within_the_send_timeout() -> None:
    # Listening but never reading: the TCP connect succeeds and the request then hangs.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        sender = AppriseSender(NotifySettings(send_timeout_seconds=1, webhook_hosts=["127.0.0.1"]))
        started = time.monotonic()
        with pytest.raises(DeliveryFailed):
            sender.send(NotificationChannel.WEBHOOK, f"json://127.0.0.1:{port}/hook", "t", "b")
        assert time.monotonic() - started < 4


def test_delivery_error_never_contains_the_target_secrets(closed_port: int) -> None:
    template = f"json://kitty:hunter2-secret@127.0.0.1:{closed_port}/tok3n-path/{{recipient}}"
    sender = AppriseSender(NotifySettings(webhook_url=SecretStr(template), send_timeout_seconds=2))
    with pytest.raises(DeliveryFailed) as caught:
        sender.send(NotificationChannel.WEBHOOK, "lab-alerts", "t", "b")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "tok3n-path" not in message
    assert "webhook delivery failed" in message


# --- background jobs -------------------------------------------------------------------


def _drain(database_url: str, context: JobContext) -> None:
    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            await run_worker(app, context, concurrency=1, wait=False)

    asyncio.run(main())


def _waiting_jobs(database: Database, notification_id: UUID) -> list[dict[str, Any]]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, scheduled_at FROM procrastinate_jobs "
                "WHERE queueing_lock = :lock AND status = 'todo'"
            ),
            {"lock": f"notification:{notification_id}"},
        )
        return [dict(row._mapping) for row in rows]


def test_worker_delivers_a_notification_deferred_through_the_queue(
    database: Database,
    database_url: str,
    job_context: JobContext,
    webhook_receiver: Receiver,
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    with ProcrastinateQueue(database_url) as queue:
        queue.defer_notification(notification_id)

    _drain(database_url, job_context)

    assert _row(database, notification_id).status is NotificationStatus.SENT
    assert len(webhook_receiver.requests) == 1


def test_deferring_a_notification_twice_keeps_one_waiting_job(
    database: Database, database_url: str, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    with ProcrastinateQueue(database_url) as queue:
        queue.defer_notification(notification_id)
        queue.defer_notification(notification_id, delay_seconds=60)

    assert len(_waiting_jobs(database, notification_id)) == 1


def test_failed_attempt_in_the_worker_schedules_one_retry_job(
    database: Database, database_url: str, job_context: JobContext, closed_port: int
) -> None:
    recipient = f"json://127.0.0.1:{closed_port}/hook"
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, recipient)
    with ProcrastinateQueue(database_url) as queue:
        queue.defer_notification(notification_id)

    _drain(database_url, job_context)

    row = _row(database, notification_id)
    assert row.status is NotificationStatus.QUEUED
    assert row.metadata_["delivery"]["attempts"] == 1
    [job] = _waiting_jobs(database, notification_id)
    next_attempt = datetime.fromisoformat(row.metadata_["delivery"]["next_attempt_at"])
    assert abs(job["scheduled_at"] - next_attempt) < timedelta(seconds=5)
    assert job["scheduled_at"] > utcnow() + timedelta(seconds=20)


def test_sweep_delivers_a_notification_whose_job_was_never_deferred(
    database: Database,
    database_url: str,
    job_context: JobContext,
    webhook_receiver: Receiver,
) -> None:
    # Committed, then the process died before deferring: only the periodic sweep knows.
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)

    run_worker_until(
        database_url,
        job_context,
        lambda: _row(database, notification_id).status is NotificationStatus.SENT,
    )

    assert len(webhook_receiver.requests) == 1


def test_session_cleanup_removes_only_idle_sessions(database: Database) -> None:
    now = utcnow()
    with database.unit_of_work() as session:
        idle = ConversationSession(context_key="idle", last_message_at=now - timedelta(hours=3))
        active = ConversationSession(
            context_key="active", last_message_at=now - timedelta(minutes=10)
        )
        session.add_all([idle, active])
        session.flush()
        job = CADJob(conversation_id=idle.id, prompt="a hook", policy_mode=CADPolicyMode.OFFLINE)
        decision = RoutingDecision(
            conversation_id=idle.id,
            request_id=UUID(int=1),
            input_hash="0" * 64,
            selected_tier=Tier.LOCAL,
            confidence=0.9,
            latency_ms=3,
        )
        session.add_all([job, decision])

    with database.unit_of_work() as session:
        removed = sessions.remove_inactive_sessions(session, now, timedelta(hours=1))

    assert removed == 1
    with database.unit_of_work() as session:
        remaining = session.scalars(select(ConversationSession.context_key)).all()
        assert remaining == ["active"]
        assert session.get(CADJob, job.id).conversation_id is None  # type: ignore[union-attr]
        assert session.get(RoutingDecision, decision.id).conversation_id == idle.id  # type: ignore[union-attr]


# --- claims: one attempt in flight, no connection held while sending ---------------------


class WorkerDied(BaseException):
    """Stands in for a worker killed mid-send: nothing after the send runs."""


class CallbackSender:
    """A sender that runs ``during_send`` in place of the network call."""

    def __init__(self, during_send: Callable[[], None]) -> None:
        self.during_send = during_send
        self.calls = 0

    def send(self, channel: NotificationChannel, recipient: str, title: str, body: str) -> None:
        self.calls += 1
        self.during_send()


def test_no_database_connection_or_row_lock_is_held_while_the_sender_runs(
    database: Database, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    seen: dict[str, Any] = {}

    def during_send() -> None:
        seen["checked_out"] = database.engine.pool.checkedout()  # type: ignore[attr-defined]
        with database.engine.connect() as conn:
            # NOWAIT fails at once if the delivering transaction still held the row.
            seen["claimed_until"] = conn.execute(
                text(
                    "SELECT metadata->'delivery'->>'claimed_until' FROM notifications "
                    "WHERE id = :id FOR UPDATE NOWAIT"
                ),
                {"id": notification_id},
            ).scalar_one()

    result = notifications.deliver(
        database, CallbackSender(during_send), notification_id, clock=_at(NOW), policy=POLICY
    )

    assert result.outcome is DeliveryOutcome.SENT
    assert seen["checked_out"] == 0
    assert datetime.fromisoformat(seen["claimed_until"]) == NOW + notifications.DEFAULT_LEASE
    delivery = _row(database, notification_id).metadata_["delivery"]
    assert "claimed_until" not in delivery
    assert "claim" not in delivery


def test_a_second_worker_skips_a_notification_another_is_sending(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    concurrent: list[DeliveryResult] = []

    def during_send() -> None:
        concurrent.append(
            notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)
        )
        sender.send(NotificationChannel.WEBHOOK, webhook_receiver.url, "Print finished", "done")

    first = notifications.deliver(
        database, CallbackSender(during_send), notification_id, clock=_at(NOW), policy=POLICY
    )

    assert first.outcome is DeliveryOutcome.SENT
    assert [r.outcome for r in concurrent] == [DeliveryOutcome.SKIPPED]
    assert len(webhook_receiver.requests) == 1
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1


def test_the_claim_of_a_worker_that_died_mid_send_expires_and_is_taken_again(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    lease = timedelta(seconds=60)

    def die() -> None:
        raise WorkerDied

    with pytest.raises(WorkerDied):
        notifications.deliver(
            database,
            CallbackSender(die),
            notification_id,
            clock=_at(NOW),
            policy=POLICY,
            lease=lease,
        )

    soon = NOW + timedelta(seconds=30)
    still_claimed = notifications.deliver(
        database, sender, notification_id, clock=_at(soon), policy=POLICY, lease=lease
    )
    with database.unit_of_work() as session:
        assert notifications.due_for_delivery(session, soon, limit=10) == []
        assert notifications.due_for_delivery(session, NOW + lease, limit=10) == [notification_id]
    retaken = notifications.deliver(
        database, sender, notification_id, clock=_at(NOW + lease), policy=POLICY, lease=lease
    )

    assert still_claimed.outcome is DeliveryOutcome.SKIPPED
    assert still_claimed.retry_in == timedelta(seconds=30)  # when the dead worker's claim ends
    assert retaken.outcome is DeliveryOutcome.SENT
    assert len(webhook_receiver.requests) == 1
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1


def test_a_worker_that_outlived_its_claim_does_not_count_its_attempt_over_the_newer_one(
    database: Database, sender: AppriseSender, closed_port: int
) -> None:
    recipient = f"json://127.0.0.1:{closed_port}/hook"
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, recipient)
    lease = timedelta(seconds=60)
    later = NOW + lease + timedelta(seconds=1)
    takeover: list[DeliveryResult] = []

    def stall_then_fail() -> None:
        # Another worker takes the expired claim (and fails too) while this one is stuck.
        takeover.append(
            notifications.deliver(
                database, sender, notification_id, clock=_at(later), policy=POLICY, lease=lease
            )
        )
        raise DeliveryFailed("timed out")

    stale = notifications.deliver(
        database,
        CallbackSender(stall_then_fail),
        notification_id,
        clock=_at(NOW),
        policy=POLICY,
        lease=lease,
    )

    assert [r.outcome for r in takeover] == [DeliveryOutcome.RETRY]
    assert stale.outcome is DeliveryOutcome.SKIPPED
    delivery = _row(database, notification_id).metadata_["delivery"]
    assert delivery["attempts"] == 1
    assert "timed out" not in delivery["last_error"]


# --- unexpected sender errors ----------------------------------------------------------


def test_an_unexpected_sender_error_counts_as_an_attempt_and_the_notification_fails(
    database: Database,
) -> None:
    notification_id = _enqueue(database, NotificationChannel.WEBHOOK, "json://127.0.0.1/hook")

    def crash() -> None:
        raise RuntimeError("cannot reach json://kitty:hunter2-secret@127.0.0.1/hook")

    crashing = CallbackSender(crash)
    outcomes = [
        notifications.deliver(
            database, crashing, notification_id, clock=_at(NOW + timedelta(hours=n)), policy=POLICY
        ).outcome
        for n in range(3)
    ]

    assert outcomes == [DeliveryOutcome.RETRY, DeliveryOutcome.RETRY, DeliveryOutcome.FAILED]
    row = _row(database, notification_id)
    assert row.status is NotificationStatus.FAILED
    assert row.metadata_["delivery"]["attempts"] == 3
    assert row.metadata_["delivery"]["last_error"] == "RuntimeError"
    assert "hunter2-secret" not in json.dumps(row.metadata_)
    assert "claimed_until" not in row.metadata_["delivery"]


# --- raw webhook recipients: allowed hosts only -----------------------------------------


def test_raw_webhook_recipients_are_refused_until_hosts_are_allowed(closed_port: int) -> None:
    sender = AppriseSender(NotifySettings())
    with pytest.raises(DeliveryFailed) as caught:
        sender.send(NotificationChannel.WEBHOOK, f"json://127.0.0.1:{closed_port}/", "t", "b")
    assert "KITTYLAB_NOTIFY__WEBHOOK_HOSTS" in str(caught.value)
    assert "KITTYLAB_NOTIFY__WEBHOOK_URL" in str(caught.value)


@pytest.mark.parametrize(
    "recipient",
    [
        "json://127.0.0.1:5432/",
        "json://169.254.169.254/latest/meta-data/",
        "jsons://hooks.lab.example.evil.example/x",
        # Apprise reads the host after the last "@" here, unlike urllib: "b" must not pass.
        "json://a@b@hooks.lab.example/x",
    ],
)
def test_raw_webhook_recipient_on_a_host_not_allowed_is_refused(recipient: str) -> None:
    sender = AppriseSender(NotifySettings(webhook_hosts=["hooks.lab.example"]))
    with pytest.raises(DeliveryFailed, match="KITTYLAB_NOTIFY__WEBHOOK_HOSTS"):
        sender.send(NotificationChannel.WEBHOOK, recipient, "t", "b")


def test_allowed_webhook_host_matches_without_case_or_brackets() -> None:
    allowed = ["Hooks.Lab.Example", "[::1]"]
    assert webhook_host_allowed("hooks.lab.example", allowed)
    assert webhook_host_allowed("::1", allowed)
    assert not webhook_host_allowed("lab.example", allowed)
    assert not webhook_host_allowed(None, allowed)


def test_a_raw_webhook_redirect_is_not_followed(webhook_receiver: Receiver) -> None:
    target = f"http://127.0.0.1:{webhook_receiver.port}/hook"

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        sender = AppriseSender(NotifySettings(webhook_hosts=["127.0.0.1"], send_timeout_seconds=5))
        recipient = f"json://127.0.0.1:{server.server_address[1]}/hook?redirect=yes"
        with pytest.raises(DeliveryFailed):
            sender.send(NotificationChannel.WEBHOOK, recipient, "t", "b")
    finally:
        server.shutdown()
        server.server_close()
    assert webhook_receiver.requests == []


def test_enqueue_with_settings_refuses_a_raw_webhook_recipient_it_could_never_send(
    database: Database,
) -> None:
    with database.unit_of_work() as session, pytest.raises(ValidationFailed) as caught:
        notifications.enqueue(
            session,
            channel=NotificationChannel.WEBHOOK,
            recipient="json://169.254.169.254/latest/meta-data/",
            title="t",
            body="b",
            settings=NotifySettings(webhook_hosts=["hooks.lab.example"]),
        )
    assert caught.value.field == "recipient"
    assert "169.254.169.254" in caught.value.message


def test_enqueue_accepts_any_webhook_recipient_when_a_template_is_configured(
    database: Database,
) -> None:
    settings = NotifySettings(webhook_url=SecretStr("json://hooks.lab.example/{recipient}"))
    with database.unit_of_work() as session:
        row = notifications.enqueue(
            session,
            channel=NotificationChannel.WEBHOOK,
            recipient="lab-alerts",
            title="t",
            body="b",
            settings=settings,
        )
    assert row.recipient == "lab-alerts"


# --- the notifications API ---------------------------------------------------------------


def _allow_webhooks(container: bootstrap.Container, hosts: list[str]) -> None:
    container.settings = container.settings.model_copy(
        update={"notify": NotifySettings(webhook_hosts=hosts)}
    )


def _post(client: TestClient, person: Person, recipient: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/notifications",
        headers=person.headers,
        json={"channel": "webhook", "recipient": recipient, "title": "t", "body": "b"},
    )
    return response


def test_api_refuses_a_raw_webhook_recipient_when_no_hosts_are_allowed(
    client: TestClient, safety_lead: Person, database: Database
) -> None:
    response = _post(client, safety_lead, "json://127.0.0.1:5432/")

    assert response.status_code == 422
    assert response.json()["field"] == "recipient"
    assert "KITTYLAB_NOTIFY__WEBHOOK_HOSTS" in response.json()["detail"]
    with database.unit_of_work() as session:
        assert session.scalars(select(Notification)).all() == []


class UnavailableQueue:
    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        raise JobQueueUnavailable("cannot defer delivery: OperationalError")


def test_api_accepts_a_notification_whose_job_cannot_be_deferred(
    client: TestClient,
    container: bootstrap.Container,
    safety_lead: Person,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _allow_webhooks(container, ["hooks.lab.example"])
    container.jobs = UnavailableQueue()

    with caplog.at_level(logging.WARNING, logger="kittylab.api.routers.notifications"):
        response = _post(client, safety_lead, "json://hooks.lab.example/hook")

    assert response.status_code == 202, response.text
    notification_id = UUID(response.json()["id"])
    assert response.json()["status"] == "queued"
    assert any("sweep" in r.getMessage() for r in caplog.records)
    with database.unit_of_work() as session:
        assert notifications.due_for_delivery(session, utcnow(), limit=10) == [notification_id]


def test_api_masks_recipient_credentials_but_keeps_them_for_delivery(
    client: TestClient, container: bootstrap.Container, safety_lead: Person, database: Database
) -> None:
    _allow_webhooks(container, ["hooks.lab.example"])
    recipient = "json://kitty:hunter2@hooks.lab.example/hook?token=tok-123&room=ops&+X-Api-Key=k-9"

    created = _post(client, safety_lead, recipient)
    assert created.status_code == 202, created.text
    notification_id = created.json()["id"]
    shown = [
        created.json()["recipient"],
        client.get(f"/api/notifications/{notification_id}", headers=safety_lead.headers).json()[
            "recipient"
        ],
        client.get("/api/notifications", headers=safety_lead.headers).json()["items"][0][
            "recipient"
        ],
    ]

    masked = (
        "json://[redacted]@hooks.lab.example/hook?token=[redacted]&room=ops&+X-Api-Key=[redacted]"
    )
    assert shown == [masked, masked, masked]
    assert _row(database, UUID(notification_id)).recipient == recipient


@pytest.mark.parametrize(
    ("recipient", "shown"),
    [
        ("ops@lab.example", "ops@lab.example"),
        ("#lab-alerts", "#lab-alerts"),
        ("json://hooks.lab.example/hook?room=ops", "json://hooks.lab.example/hook?room=ops"),
        (
            "json://bot@hooks.lab.example/?secret=s&sig=x",
            "json://[redacted]@hooks.lab.example/?secret=[redacted]&sig=[redacted]",
        ),
        (
            "json://127.0.0.1:18899/hooks/SECRETPATHTOKEN123",
            "json://127.0.0.1:18899/hooks/[redacted]",
        ),
        (
            "jsons://u:p@[::1]:8443/services/T000/B000/XXXX/?room=ops#frag",
            "jsons://[redacted]@[::1]:8443/services/[redacted]/[redacted]/[redacted]/"
            "?room=ops#[redacted]",
        ),
        ("json://a@b@hooks.lab.example/x", "json://[redacted]@hooks.lab.example/x"),
        ("json://[::1/broken", "[redacted]"),
    ],
)
def test_mask_recipient_hides_credentials_but_keeps_the_target_host(
    recipient: str, shown: str
) -> None:
    assert mask_recipient(recipient) == shown


def _post_as(client: TestClient, person: Person, **fields: str) -> httpx.Response:
    body = {"channel": "email", "recipient": "ops@lab.example", "title": "t", "body": "b"}
    response: httpx.Response = client.post(
        "/api/notifications", headers=person.headers, json=body | fields
    )
    return response


def _configure_email(container: bootstrap.Container) -> None:
    container.settings = container.settings.model_copy(
        update={
            "notify": NotifySettings(
                email_url=SecretStr("mailto://127.0.0.1:8025?to={recipient}&mode=insecure")
            )
        }
    )


def test_api_scopes_idempotency_keys_to_the_caller(
    client: TestClient,
    container: bootstrap.Container,
    admin: Person,
    safety_lead: Person,
    database: Database,
) -> None:
    _configure_email(container)

    mine = _post_as(client, admin, idempotencyKey="k-shared-1")
    theirs = _post_as(
        client,
        safety_lead,
        idempotencyKey="k-shared-1",
        recipient="other@lab.example",
        title="Another",
        body="another message",
    )

    assert (mine.status_code, theirs.status_code) == (202, 202), theirs.text
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["recipient"] == "other@lab.example"
    assert theirs.json()["payload"] == {"title": "Another", "body": "another message"}
    row = _row(database, UUID(theirs.json()["id"]))
    assert row.requested_by == safety_lead.user_id


def test_api_returns_the_first_notification_when_a_caller_repeats_a_request(
    client: TestClient, container: bootstrap.Container, admin: Person, database: Database
) -> None:
    _configure_email(container)

    first = _post_as(client, admin, idempotencyKey="k-1")
    again = _post_as(client, admin, idempotencyKey="k-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    with database.unit_of_work() as session:
        assert len(session.scalars(select(Notification)).all()) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"channel": "webhook", "recipient": "json://hooks.lab.example/hook"},
        {"recipient": "someone-else@lab.example"},
        {"title": "Other"},
        {"body": "other"},
    ],
)
def test_api_refuses_a_callers_idempotency_key_reused_for_a_different_message(
    client: TestClient,
    container: bootstrap.Container,
    admin: Person,
    database: Database,
    change: dict[str, str],
) -> None:
    container.settings = container.settings.model_copy(
        update={
            "notify": NotifySettings(
                email_url=SecretStr("mailto://127.0.0.1:8025?to={recipient}&mode=insecure"),
                webhook_hosts=["hooks.lab.example"],
            )
        }
    )
    first = _post_as(client, admin, idempotencyKey="k-1")

    reused = _post_as(client, admin, idempotencyKey="k-1", **change)

    assert first.status_code == 202
    assert reused.status_code == 409, reused.text
    assert reused.json()["field"] == "idempotencyKey"
    with database.unit_of_work() as session:
        assert session.scalars(select(Notification.id)).all() == [UUID(first.json()["id"])]


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"recipient": "not an email, x@y.z"}, "recipient", "single valid email address"),
        ({"recipient": "ops@lab.example,spy@evil.example"}, "recipient", "email address"),
        ({"channel": "slack", "recipient": "#lab"}, "channel", "KITTYLAB_NOTIFY__SLACK_URL"),
        ({"channel": "push", "recipient": "lab"}, "channel", "KITTYLAB_NOTIFY__PUSH_URL"),
    ],
)
def test_api_refuses_a_notification_that_could_never_be_sent(
    client: TestClient,
    container: bootstrap.Container,
    safety_lead: Person,
    database: Database,
    fields: dict[str, str],
    field: str,
    hint: str,
) -> None:
    _configure_email(container)

    response = _post_as(client, safety_lead, **fields)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert hint in response.json()["detail"]
    with database.unit_of_work() as session:
        assert session.scalars(select(Notification)).all() == []


def test_api_refuses_email_when_no_email_target_is_configured(
    client: TestClient, safety_lead: Person
) -> None:
    response = _post_as(client, safety_lead)

    assert response.status_code == 422
    assert response.json()["field"] == "channel"
    assert "KITTYLAB_NOTIFY__EMAIL_URL" in response.json()["detail"]


# --- untrusted text stays text -----------------------------------------------------------

# What an engineer, a device's manifest entry or a printer's error text might carry.
MARKUP_LINK = '<a href="https://evil.example/approve">URGENT: safety approval needed</a>'
MARKUP_IMAGE = "<img src=x onerror=alert(document.domain)>"


def _parts(message: Message) -> dict[str, list[str]]:
    """The decoded text of every part of ``message``, by content type."""
    parts: dict[str, list[str]] = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts.setdefault(part.get_content_type(), []).append(payload.decode())
    return parts


def _assert_inert(message: Message, *markup: str) -> None:
    """Each piece of ``markup`` is in the mail as text: literally in text/plain parts, and
    escaped in any HTML part, where none of it may appear as a tag."""
    parts = _parts(message)
    assert set(parts) <= {"text/plain", "text/html"}, parts
    for html_part in parts.get("text/html", []):
        assert "<a" not in html_part and "<img" not in html_part, html_part
        assert "&lt;a" in html_part and "&lt;img" in html_part
    for text_part in parts.get("text/plain", []):
        for piece in markup:
            assert piece in text_part


@pytest.mark.parametrize(
    "url_format",
    ["", "&format=html", "&format=markdown", "&format=text"],
    ids=["default", "format=html", "format=markdown", "format=text"],
)
def test_markup_in_a_device_name_and_a_reason_arrives_inert_whatever_format_the_lab_set(
    database: Database, smtp_server: tuple[Inbox, int], url_format: str
) -> None:
    inbox, port = smtp_server
    sender = AppriseSender(
        NotifySettings(
            email_url=SecretStr(
                f"mailto://127.0.0.1:{port}?from=kittylab@lab.example&to={{recipient}}"
                f"&mode=insecure{url_format}"
            ),
            send_timeout_seconds=5,
        )
    )
    device = f"Voron {MARKUP_IMAGE}"
    title = f"Print failed on {device}"
    body = f"benchy.gcode: failed ({MARKUP_LINK}). Clear the bed of {device}."
    notification_id = _enqueue(
        database, NotificationChannel.EMAIL, "ops@lab.example", title=title, body=body
    )

    result = notifications.deliver(database, sender, notification_id, clock=_at(NOW), policy=POLICY)

    assert result.outcome is DeliveryOutcome.SENT
    message = inbox.message()
    assert message["Subject"] == title
    _assert_inert(message, MARKUP_LINK, MARKUP_IMAGE)


def test_markup_in_a_cad_prompt_reaches_the_failure_alert_email_as_text(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    database: Database,
    sender: AppriseSender,
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp_server
    give_email(database, operator, "olivia@lab.example")
    # A worker that cannot even import CadQuery within its memory limit: the job fails and
    # the operators are alerted, the prompt quoted in the alert.
    prompt = f"a 20 mm cube {MARKUP_LINK} {MARKUP_IMAGE}"
    answer = generate_with_a_starved_worker(container, client, operator, prompt)
    assert answer.status_code == 502, answer.text
    with database.unit_of_work() as session:
        alert_id = session.scalars(select(Notification.id)).one()

    result = notifications.deliver(database, sender, alert_id, clock=_at(NOW), policy=POLICY)

    assert result.outcome is DeliveryOutcome.SENT
    assert inbox.envelopes[0].rcpt_tos == ["olivia@lab.example"]
    _assert_inert(inbox.message(), MARKUP_LINK, MARKUP_IMAGE)
