"""Issue 16, memory and replies that close the loop, on the real database with the demo
lab: every turn's words are stored with the conversation (secrets redacted) and read back
by its participants only; a device command's reply says how it went when the device
confirms within the bound, and otherwise the outcome follows as a later message, stored in
the transaction that decides the command and pushed on the conversation's event stream."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ConversationMessage, Device, DeviceCommand
from kittylab.cli.shell import ShellSession
from kittylab.conversation import messages
from kittylab.conversation.memory import TurnMemory
from kittylab.devices import commands
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CommandStatus, OnlineState
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.conftest import Person, _person


@pytest.fixture
def demo(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> None:
    manifest = replace(load_manifest(demo_lab_path), users=())
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))


def _wait(container: bootstrap.Container, seconds: float) -> None:
    hooks = container.query.hooks
    assert isinstance(hooks, TurnMemory) and hooks.closer is not None
    hooks.closer.wait_seconds = seconds


def _ask(client: TestClient, person: Person, text: str, conversation: Any = None) -> Any:
    body: dict[str, Any] = {"channel": "cli", "input": {"text": text}}
    if conversation is not None:
        body["conversationId"] = str(conversation)
    r = client.post("/api/query", json=body, headers=person.headers)
    assert r.status_code in (200, 202), r.text
    return r.json()


def _messages(client: TestClient, person: Person, conversation: Any, **params: Any) -> Any:
    return client.get(
        f"/api/conversations/{conversation}/messages", params=params, headers=person.headers
    )


def _decide(
    database: Database, command_id: UUID, status: CommandStatus, reason: str | None
) -> None:
    now = utcnow()
    with database.unit_of_work() as s:
        commands.advance_command(s, command_id, CommandStatus.SENT, now=now)
    with database.unit_of_work() as s:
        commands.advance_command(s, command_id, status, now=now, reason=reason)


def _decide_when_recorded(
    database: Database, delay: float, status: CommandStatus, reason: str | None = None
) -> threading.Thread:
    """Play the device's dispatch: once a command exists, decide it after ``delay``."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with database.unit_of_work() as s:
                found = s.scalar(select(DeviceCommand.id))
            if found is not None:
                time.sleep(delay)
                _decide(database, found, status, reason)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_turns_are_stored_with_the_conversation_and_read_back_oldest_to_newest(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 0)
    first = _ask(client, operator, "what can you do")
    conversation = first["conversationId"]
    _ask(client, operator, "my token is kl_abcdefghijklmnopqrstuvwxyz012345, keep it", conversation)
    page = _messages(client, operator, conversation, limit=3)
    assert page.status_code == 200, page.text
    body = page.json()
    kinds = [m["kind"] for m in body["items"]]
    assert kinds == ["reply", "request", "reply"]  # newest first, like every list
    assert body["nextCursor"]
    rest = _messages(client, operator, conversation, cursor=body["nextCursor"]).json()
    history = list(reversed(body["items"] + rest["items"]))
    assert [m["kind"] for m in history] == ["request", "reply", "request", "reply"]
    assert history[0]["text"] == "what can you do"
    assert history[0]["authorId"] == str(operator.user_id)
    assert history[0]["channel"] == "cli"
    assert history[1]["text"] == first["replies"][0]["text"]
    assert history[1]["details"]["decision_id"] == first["routing"]["decisionId"]
    # The secret never reaches the table.
    assert "kl_abcdefghijklmnop" not in history[2]["text"]
    assert "[redacted]" in history[2]["text"]
    with container.database.unit_of_work() as s:
        stored = list(s.scalars(select(ConversationMessage.text)))
    assert not any("kl_abcdefghijklmnop" in t for t in stored)


def test_only_participants_safety_and_admin_read_a_conversations_messages(
    container: bootstrap.Container,
    client: TestClient,
    demo: None,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    database: Database,
) -> None:
    _wait(container, 0)
    conversation = _ask(client, operator, "what can you do")["conversationId"]
    stranger = _person(database, "eve", ["operator"])
    refused = _messages(client, stranger, conversation)
    assert refused.status_code == 403, refused.text
    events = client.get(f"/api/conversations/{conversation}/events", headers=stranger.headers)
    assert events.status_code == 403
    assert _messages(client, safety_lead, conversation).status_code == 200
    assert _messages(client, admin, conversation).status_code == 200
    missing = _messages(client, operator, "0190f2c5-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    bad = _messages(client, operator, conversation, kind="gossip")
    assert bad.status_code == 422 and bad.json()["field"] == "kind"


def test_a_command_reply_says_the_outcome_when_the_device_confirms_in_time(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 5)
    _decide_when_recorded(container.database, 0.1, CommandStatus.ACKED)
    started = time.monotonic()
    body = _ask(client, operator, "dim the farm lights to thirty percent")
    assert time.monotonic() - started < 4  # answered at the confirmation, not the bound
    assert body["replies"][-1]["text"] == "Farm lights are on at 30 %."
    assert body["command"]["status"] == "acked"
    history = _messages(client, operator, body["conversationId"]).json()["items"]
    assert [m["kind"] for m in reversed(history)] == ["request", "reply", "outcome"]
    assert history[0]["commandId"] == body["command"]["id"]


def test_past_the_bound_the_reply_says_under_way_and_the_outcome_follows_on_the_stream(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 0.2)
    container.settings.conversations.events_max_seconds = 4
    container.settings.conversations.events_poll_seconds = 0.05
    body = _ask(client, operator, "lock the cnc door")
    reply = body["replies"][-1]["text"]
    assert "under way" in reply and "confirmed yet" in reply, reply
    assert body["command"]["status"] == "pending"
    conversation = body["conversationId"]
    command_id = UUID(body["command"]["id"])
    received: list[dict[str, Any]] = []
    with client.stream(
        "GET", f"/api/conversations/{conversation}/events", headers=operator.headers
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        threading.Timer(
            0.3,
            _decide,
            (container.database, command_id, CommandStatus.FAILED, "the door reports locked=False"),
        ).start()
        for line in stream.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[len("data: ") :]))
                break
    assert received[0]["kind"] == "outcome"
    assert received[0]["commandId"] == str(command_id)
    assert received[0]["text"].endswith("did not lock: the door reports locked=False.")
    stored = _messages(client, operator, conversation, kind="outcome").json()["items"]
    assert [m["id"] for m in stored] == [received[0]["id"]]


def test_an_outcome_is_written_with_the_decision_or_not_at_all(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 0)
    body = _ask(client, operator, "turn on the farm lights")
    command_id = UUID(body["command"]["id"])
    now = utcnow()
    with container.database.unit_of_work() as s:
        commands.advance_command(s, command_id, CommandStatus.SENT, now=now)
    # A decision that never commits (the worker crashed) leaves no outcome message ...
    with pytest.raises(RuntimeError):
        _decide_and_crash(container.database, command_id, now)
    with container.database.unit_of_work() as s:
        assert messages.outcome_of(s, command_id) is None
        # ... and the one that commits carries it, once.
        commands.advance_command(s, command_id, CommandStatus.ACKED, now=now)
        command = s.get(DeviceCommand, command_id)
        assert command is not None
        messages.record_outcome(s, command, now)
    with container.database.unit_of_work() as s:
        told = s.scalars(
            select(ConversationMessage).where(
                ConversationMessage.command_id == command_id, ConversationMessage.kind == "outcome"
            )
        ).all()
    assert [m.text for m in told] == ["Farm lights are on."]


def _decide_and_crash(database: Database, command_id: UUID, now: datetime) -> None:
    with database.unit_of_work() as s:
        commands.advance_command(s, command_id, CommandStatus.ACKED, now=now)
        raise RuntimeError("crash before commit")


def test_messages_past_their_retention_are_purged(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 0)
    conversation = _ask(client, operator, "what can you do")["conversationId"]
    later = utcnow() + timedelta(days=31)
    assert messages.purge_old_messages(container.database, later, timedelta(days=30)) == 2
    assert _messages(client, operator, conversation).json()["items"] == []


def test_the_shell_continues_a_conversation_another_client_began_and_prints_later_outcomes(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    _wait(container, 0.1)
    container.settings.conversations.events_max_seconds = 5
    container.settings.conversations.events_poll_seconds = 0.05
    # Begun on the wall terminal ...
    body = client.post(
        "/api/query",
        json={"channel": "wall_terminal", "input": {"text": "turn on the farm lights"}},
        headers=operator.headers,
    ).json()
    first_command = UUID(body["command"]["id"])
    # ... continued in the shell at a desk, with the history.
    client.headers.update(operator.headers)
    shown: list[str] = []
    shell = ShellSession(client, "cli", events=client, show=shown.append)
    history = shell.resume(UUID(body["conversationId"]))
    assert history.splitlines()[0] == "you (wall_terminal)> turn on the farm lights"
    assert "on its way" in history.splitlines()[1]  # the reply as it was given
    reply = shell.send("dim them to 30 percent")
    assert str(shell.conversation_id) == body["conversationId"]
    assert "farm lights to 30%" in reply  # "them": the context carried over from the other client
    # The first command's outcome arrives after its reply: the shell prints it.
    _decide(container.database, first_command, CommandStatus.ACKED, None)
    deadline = time.monotonic() + 4
    while not shown and time.monotonic() < deadline:
        time.sleep(0.05)
    shell.close()
    assert shown == ["kitty> [later] Farm lights are on."]
