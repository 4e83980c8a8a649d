"""An admin's invite over the API (issue 17): the enrolment link goes by email (a real
SMTP server, aiosmtpd) to the person's own address, starts their enrolment, and is shown
to no one else: not in the admin's answer, the audit, the notifications API or the logs."""

from __future__ import annotations

import email
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.api.app import create_app
from kittylab.config import NotifySettings
from kittylab.records import notifications
from kittylab.records.notifications import DeliveryOutcome
from tests.integration.cad_failures import give_email
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres

LINK = re.compile(r"https?://\S+/enrol#(kli_[A-Za-z0-9_-]+)")


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def text(self, index: int = 0) -> str:
        message = email.message_from_bytes(self.envelopes[index].content)
        parts = message.walk() if message.is_multipart() else [message]
        return "".join(
            part.get_payload(decode=True).decode()
            for part in parts
            if part.get_content_maintype() == "text"
        )


@pytest.fixture
def inbox(container: bootstrap.Container) -> Iterator[_Inbox]:
    """A real SMTP server, and the lab's email target pointed at it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    received = _Inbox()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    container.settings = container.settings.model_copy(
        update={
            "notify": NotifySettings(
                email_url=SecretStr(
                    f"mailto://127.0.0.1:{port}?from=kittylab@lab.example"
                    "&to={recipient}&mode=insecure"
                ),
                send_timeout_seconds=5,
            )
        }
    )
    try:
        yield received
    finally:
        controller.stop()


def _deliver(container: bootstrap.Container, notification_id: UUID) -> None:
    settings = container.settings.notify
    result = notifications.deliver(
        container.database,
        AppriseSender(settings),
        notification_id,
        policy=notifications.retry_policy(settings),
    )
    assert result.outcome is DeliveryOutcome.SENT


def test_an_admins_invite_reaches_the_persons_own_inbox_and_no_one_else(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    admin: Person,
    operator: Person,
    inbox: _Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    give_email(database, operator, "olivia@lab.example")

    with caplog.at_level(logging.DEBUG):
        answer = client.post(f"/api/users/{operator.user_id}/invite", headers=admin.headers)
        assert answer.status_code == 202, answer.text
        sent = answer.json()
        _deliver(container, UUID(sent["notificationId"]))

    assert sent["sentTo"] == "o…@lab.example"
    assert sent["userId"] == str(operator.user_id)
    assert len(inbox.envelopes) == 1
    assert inbox.envelopes[0].rcpt_tos == ["olivia@lab.example"]
    found = LINK.search(inbox.text())
    assert found is not None, inbox.text()
    token = found.group(1)

    # Shown to no one but the person: not the admin's answer, the audit, the outbox, the logs.
    shown = [
        answer.text,
        client.get("/api/audit", headers=admin.headers).text,
        client.get("/api/notifications", headers=admin.headers).text,
        client.get(f"/api/notifications/{sent['notificationId']}", headers=admin.headers).text,
        caplog.text,
    ]
    assert [token in text for text in shown] == [False] * len(shown)
    with database.unit_of_work() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action.in_(["invite.issued", "invite.sent"]))
        ).all()
        assert sorted(e.action for e in entries) == ["invite.issued", "invite.sent"]
        assert all(e.actor_id == admin.user_id for e in entries)
        assert all(token not in str(e.details) for e in entries)

    # The link from the inbox starts the person's enrolment, once.
    started = client.post("/api/webauthn/register/options", json={"invite": token})
    assert started.status_code == 200, started.text
    assert started.json()["publicKey"]["user"]["name"] == "olivia"


def test_an_admin_may_invite_themselves_to_their_own_address(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    admin: Person,
    inbox: _Inbox,
) -> None:
    give_email(database, admin, "ada@lab.example")
    answer = client.post(f"/api/users/{admin.user_id}/invite", headers=admin.headers)
    assert answer.status_code == 202, answer.text
    _deliver(container, UUID(answer.json()["notificationId"]))
    assert inbox.envelopes[0].rcpt_tos == ["ada@lab.example"]
    assert LINK.search(inbox.text()) is not None


def test_only_an_admin_may_send_an_invite(
    client: TestClient, database: Database, operator: Person, safety_lead: Person, inbox: _Inbox
) -> None:
    give_email(database, operator, "olivia@lab.example")
    for who in (operator, safety_lead):
        refused = client.post(f"/api/users/{operator.user_id}/invite", headers=who.headers)
        assert refused.status_code == 403, refused.text
    assert inbox.envelopes == []


def test_a_person_without_an_email_address_gets_no_invite_and_the_admin_is_told_why(
    client: TestClient, admin: Person, operator: Person, inbox: _Inbox
) -> None:
    refused = client.post(f"/api/users/{operator.user_id}/invite", headers=admin.headers)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["field"] == "email"
    assert "kittylab users invite olivia" in problem["detail"]
    assert "server host" in problem["detail"]


def test_an_admin_outside_the_trusted_networks_cannot_send_an_invite(
    container: bootstrap.Container,
    database: Database,
    admin: Person,
    operator: Person,
    inbox: _Inbox,
) -> None:
    give_email(database, operator, "olivia@lab.example")
    with TestClient(
        create_app(container), raise_server_exceptions=False, client=("203.0.113.7", 50000)
    ) as remote:
        refused = remote.post(f"/api/users/{operator.user_id}/invite", headers=admin.headers)
    assert refused.status_code == 403, refused.text
    assert "trusted networks" in refused.json()["detail"]
    with database.unit_of_work() as session:
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == "invite.issued")).all()
            == []
        )
