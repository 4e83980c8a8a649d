"""The console's talk page over HTTP on the real database (issue 17, item 3): a typed turn
starts a conversation and the page's address becomes its own, later turns are appended,
held requests link their safety event, bad input names its field, and a conversation is
for its participants. (The live transcript, push-to-talk and outcomes arriving run in a
real browser: tests/e2e/test_console_talk.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.api.app import create_app
from kittylab.api.web_auth import CSRF_HEADER, SESSION_COOKIE, limits
from kittylab.config import Settings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import OnlineState
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import web_sessions
from tests.integration.conftest import Person, _person

SAY = "/console/talk/say"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        _env_file=None,
        query={"model": {"backend": "none"}},
        conversations={"reply_wait_seconds": 0},
    )


@pytest.fixture
def talk_lab(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> None:
    manifest = replace(load_manifest(demo_lab_path), users=())  # the people are the fixtures'
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))


def _signed_in(client: TestClient, container: bootstrap.Container, person: Person) -> str:
    """``client`` with ``person``'s console session; returns its CSRF token."""
    with container.database.unit_of_work() as session:
        issued = web_sessions.start(
            session,
            person.user_id,
            passkey_id=None,
            limits=limits(container.settings.console),
            now=utcnow(),
        )
    client.cookies.set(SESSION_COOKIE, issued.token)
    return issued.csrf_token


def _say(client: TestClient, csrf: str, text: str, conversation: str = "") -> Any:
    return client.post(
        SAY, data={"text": text, "conversation_id": conversation}, headers={CSRF_HEADER: csrf}
    )


def test_a_typed_turn_starts_a_conversation_and_later_turns_are_appended(
    talk_lab: None, client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    csrf = _signed_in(client, container, operator)
    started = client.post(
        SAY, data={"text": "turn on the farm lights"}, headers={CSRF_HEADER: csrf}
    )
    assert started.status_code == 200, started.text
    assert started.headers["HX-Retarget"] == "#conversation"
    conversation = started.headers["HX-Push-Url"].removeprefix("/talk/")
    assert f'value="{conversation}" hx-swap-oob="true"' in started.text  # the composer's id
    assert f'sse-connect="/console/talk/{conversation}/events?after=' in started.text
    assert "turn on the farm lights" in started.text
    assert "Under way" in started.text  # its command, until the device confirms

    held = _say(client, csrf, "unlock the laser door", conversation)
    assert held.status_code == 200, held.text
    assert held.headers["HX-Retarget"] == "#transcript"
    assert held.headers["HX-Reswap"] == "beforeend"
    assert held.text.count('class="msg request') == 1  # only the new turn
    link = re.search(r'href="/safety#event-([0-9a-f-]{36})"', held.text)
    assert link is not None, held.text
    assert "Held: awaiting approval." in held.text

    page = client.get(f"/talk/{conversation}")
    assert page.status_code == 200
    assert page.text.count('class="msg request') == 2
    assert f'<a href="/talk/{conversation}" aria-current="page">' in page.text
    assert f"kittylab shell --continue {conversation}" in page.text
    assert 'id="push-to-talk"' in page.text  # from the lab's network, speech configured
    assert link.group(0) in page.text  # the held reply, as it stands


def test_bad_turns_name_their_field_and_need_the_csrf_token(
    talk_lab: None, client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    csrf = _signed_in(client, container, operator)
    empty = _say(client, csrf, "   ")
    assert empty.status_code == 422
    assert empty.json()["field"] == "text"
    bad_id = _say(client, csrf, "help", "not-a-conversation")
    assert bad_id.status_code == 422
    assert bad_id.json()["field"] == "conversation_id"
    gone = _say(client, csrf, "help", "0192e0a4-8f6e-7a51-9d1e-2f4c8b7a6d10")
    assert gone.status_code == 404
    unchecked = client.post(SAY, data={"text": "help"})
    assert unchecked.status_code == 403
    assert "CSRF" in unchecked.json()["detail"]


def test_a_conversation_is_for_its_participants(
    talk_lab: None,
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    operator: Person,
) -> None:
    csrf = _signed_in(client, container, operator)
    started = _say(client, csrf, "help")
    conversation = started.headers["HX-Push-Url"].removeprefix("/talk/")
    turn = re.search(r'data-request="([0-9a-f-]{36})"', started.text)
    assert turn is not None

    engineer = _person(database, "erin", ["engineer"])
    other = TestClient(create_app(container), client=("127.0.0.1", 50000))
    other_csrf = _signed_in(other, container, engineer)
    assert _say(other, other_csrf, "help", conversation).status_code == 403
    page = other.get(f"/talk/{conversation}")
    assert page.status_code == 200
    assert "Not shown:" in page.text and "help" not in page.text.split("Not shown:")[1][:200]
    assert 'class="msg' not in page.text
    assert other.get(f"/console/talk/{conversation}/turns/{turn.group(1)}").status_code == 403
    assert other.get(f"/console/talk/{conversation}/events").status_code == 403
    assert f'href="/talk/{conversation}"' not in other.get("/talk").text


@pytest.fixture
def remote(container: bootstrap.Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), client=("203.0.113.7", 50000)) as c:
        yield c


def test_from_outside_the_lab_a_question_is_asked_and_no_voice_is_offered(
    talk_lab: None, remote: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    csrf = _signed_in(remote, container, operator)
    page = remote.get("/talk")
    assert "Read-only here." in page.text
    assert 'id="push-to-talk"' not in page.text
    asked = _say(remote, csrf, "help")
    assert asked.status_code == 200, asked.text
    assert "remote" in asked.text  # the channel it came through
    switched = _say(remote, csrf, "turn on the farm lights")
    assert switched.status_code == 200
    replies = re.findall(r'class="text">([^<]*)', switched.text)
    assert "Under way" not in switched.text, replies
    assert replies[-1].startswith("I can&#39;t:"), replies  # the gate's answer, in words
