"""Durable notifications and background jobs, end to end: real PostgreSQL, a real SMTP
server (aiosmtpd), a real HTTP receiver, and the procrastinate worker."""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
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

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import select, text

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import CADJob, ConversationSession, Notification, RoutingDecision
from kittylab.adapters.jobs import JobContext, ProcrastinateQueue, build_job_app, run_worker
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.config import JobSettings, NotifySettings, Settings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADPolicyMode, NotificationChannel, NotificationStatus, Tier
from kittylab.domain.notifications import RetryPolicy
from kittylab.services import notifications, sessions
from kittylab.services.notifications import DeliveryOutcome
from kittylab.services.ports import DeliveryFailed

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

    result = notifications.deliver(database, sender, notification_id, now=NOW, policy=POLICY)

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

    result = notifications.deliver(database, sender, notification_id, now=NOW, policy=POLICY)

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

    first = notifications.deliver(database, sender, notification_id, now=NOW, policy=POLICY)

    assert first.outcome is DeliveryOutcome.RETRY
    assert first.retry_in == timedelta(seconds=30)
    delivery = _row(database, notification_id).metadata_["delivery"]
    assert delivery["attempts"] == 1
    assert datetime.fromisoformat(delivery["next_attempt_at"]) == NOW + timedelta(seconds=30)
    assert "connection error" in delivery["last_error"].lower()

    early = notifications.deliver(
        database, sender, notification_id, now=NOW + timedelta(seconds=5), policy=POLICY
    )
    assert early.outcome is DeliveryOutcome.NOT_DUE
    assert early.retry_in == timedelta(seconds=25)
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1

    second = notifications.deliver(
        database, sender, notification_id, now=NOW + timedelta(seconds=30), policy=POLICY
    )
    assert second.outcome is DeliveryOutcome.RETRY
    assert second.retry_in == timedelta(seconds=60)

    last = notifications.deliver(
        database, sender, notification_id, now=NOW + timedelta(seconds=90), policy=POLICY
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
    notifications.deliver(database, sender, notification_id, now=NOW, policy=POLICY)

    again = notifications.deliver(database, sender, notification_id, now=NOW, policy=POLICY)

    assert again.outcome is DeliveryOutcome.SKIPPED
    assert len(webhook_receiver.requests) == 1
    assert _row(database, notification_id).metadata_["delivery"]["attempts"] == 1


def test_repeated_idempotency_key_returns_the_existing_notification(database: Database) -> None:
    with database.unit_of_work() as session:
        first = notifications.enqueue(
            session,
            channel=NotificationChannel.EMAIL,
            recipient="ops@lab.example",
            title="Door unlocked",
            body="token=kl_abcdefghijklmnopqrstuvwxyz was used",
            idempotency_key="unlock-42",
        )
    with database.unit_of_work() as session:
        second = notifications.enqueue(
            session,
            channel=NotificationChannel.EMAIL,
            recipient="someone-else@lab.example",
            title="Other",
            body="other",
            idempotency_key="unlock-42",
        )
        count = len(session.scalars(select(Notification)).all())

    assert second.id == first.id
    assert second.recipient == "ops@lab.example"
    assert count == 1
    assert "kl_abcdefghijklmnopqrstuvwxyz" not in first.payload["body"]


def test_due_for_delivery_lists_queued_notifications_whose_attempt_is_due(
    database: Database, sender: AppriseSender, webhook_receiver: Receiver, closed_port: int
) -> None:
    fresh = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    backing_off = _enqueue(
        database, NotificationChannel.WEBHOOK, f"json://127.0.0.1:{closed_port}/"
    )
    sent = _enqueue(database, NotificationChannel.WEBHOOK, webhook_receiver.url)
    notifications.deliver(database, sender, backing_off, now=NOW, policy=POLICY)
    notifications.deliver(database, sender, sent, now=NOW, policy=POLICY)

    with database.unit_of_work() as session:
        now_due = notifications.due_for_delivery(session, NOW, limit=10)
        later_due = notifications.due_for_delivery(session, NOW + timedelta(seconds=30), limit=10)

    assert now_due == [fresh]
    assert later_due == [fresh, backing_off]


def test_channel_without_configuration_names_its_setting() -> None:
    sender = AppriseSender(NotifySettings())
    with pytest.raises(DeliveryFailed, match="KITTYLAB_NOTIFY__EMAIL_URL"):
        sender.send(NotificationChannel.EMAIL, "ops@lab.example", "t", "b")
    with pytest.raises(DeliveryFailed, match="KITTYLAB_NOTIFY__SLACK_URL"):
        sender.send(NotificationChannel.SLACK, "#lab", "t", "b")


def test_bare_webhook_recipient_must_be_an_http_apprise_url() -> None:
    sender = AppriseSender(NotifySettings())
    with pytest.raises(DeliveryFailed, match="json://"):
        sender.send(NotificationChannel.WEBHOOK, "mailto://evil.example?to=x@y.example", "t", "b")


def test_email_recipient_cannot_add_addressees(notify_settings: NotifySettings) -> None:
    sender = AppriseSender(notify_settings)
    with pytest.raises(DeliveryFailed, match="single email address"):
        sender.send(NotificationChannel.EMAIL, "ops@lab.example,spy@evil.example", "t", "b")


def test_a_target_that_never_answers_fails_within_the_send_timeout() -> None:
    # Listening but never reading: the TCP connect succeeds and the request then hangs.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        sender = AppriseSender(NotifySettings(send_timeout_seconds=1))
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


def _run_worker_until(
    database_url: str, context: JobContext, done: Callable[[], bool], timeout: float = 30
) -> None:
    """Run a waiting worker until ``done()`` holds, then stop it as ``kittylab serve`` does."""

    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            worker = asyncio.create_task(run_worker(app, context, concurrency=2))
            try:
                async with asyncio.timeout(timeout):
                    while not await asyncio.to_thread(done):
                        if worker.done():
                            worker.result()  # surfaces a crashed worker
                        await asyncio.sleep(0.1)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    asyncio.run(main())


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

    _run_worker_until(
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
