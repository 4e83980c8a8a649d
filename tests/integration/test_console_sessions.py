"""The console's sessions and enrolment links over HTTP (issue 17): a cookie session is a
second way to the same person; writes need its CSRF token; idle, ended, revoked and remote
sessions get what they should. (The passkey ceremonies themselves run in a real browser:
tests/e2e/test_console.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.api.app import create_app
from kittylab.api.web_auth import CSRF_HEADER, SESSION_COOKIE, limits
from kittylab.domain.clock import utcnow
from kittylab.people import identity, passkeys, web_sessions
from tests.integration.conftest import Person


def _session(
    container: bootstrap.Container, person: Person, *, ago: timedelta = timedelta(0)
) -> web_sessions.IssuedSession:
    with container.database.unit_of_work() as session:
        return web_sessions.start(
            session,
            person.user_id,
            passkey_id=None,
            limits=limits(container.settings.console),
            now=utcnow() - ago,
        )


@pytest.fixture
def remote_client(container: bootstrap.Container) -> Iterator[TestClient]:
    with TestClient(
        create_app(container), raise_server_exceptions=False, client=("203.0.113.7", 50000)
    ) as c:
        yield c


def test_a_session_cookie_reads_the_api_as_its_person(
    client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    issued = _session(container, operator)
    client.cookies.set(SESSION_COOKIE, issued.token)
    me = client.get("/api/me")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "olivia"


def test_a_cookie_write_needs_the_sessions_csrf_token(
    client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    issued = _session(container, operator)
    client.cookies.set(SESSION_COOKIE, issued.token)
    for headers in ({}, {CSRF_HEADER: "not-the-token"}):
        refused = client.post("/console/sign-out", headers=headers)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.json()["detail"]
    signed_out = client.post("/console/sign-out", headers={CSRF_HEADER: issued.csrf_token})
    assert signed_out.status_code == 204
    assert client.get("/api/me").status_code == 401


def test_a_bearer_token_write_needs_no_csrf_token(client: TestClient, operator: Person) -> None:
    # Programs keep using tokens; a browser never sends one by itself.
    created = client.post(
        f"/api/users/{operator.user_id}/tokens", headers=operator.headers, json={"label": "x"}
    )
    assert created.status_code == 201, created.text


def test_idle_and_ended_sessions_are_refused_and_pages_go_to_sign_in(
    client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    console = container.settings.console
    idle = _session(container, operator, ago=timedelta(seconds=console.session_idle_seconds + 5))
    client.cookies.set(SESSION_COOKIE, idle.token)
    assert client.get("/api/me").status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in"


def test_a_revoked_session_is_refused_at_once(
    client: TestClient, container: bootstrap.Container, operator: Person
) -> None:
    first, second = _session(container, operator), _session(container, operator)
    client.cookies.set(SESSION_COOKIE, first.token)
    revoked = client.post(
        f"/console/sessions/{second.session_id}/revoke", headers={CSRF_HEADER: first.csrf_token}
    )
    assert revoked.status_code == 200, revoked.text
    client.cookies.set(SESSION_COOKIE, second.token)
    assert client.get("/api/me").status_code == 401


def test_nobody_revokes_someone_elses_session(
    client: TestClient, container: bootstrap.Container, operator: Person, admin: Person
) -> None:
    theirs = _session(container, operator)
    mine = _session(container, admin)
    client.cookies.set(SESSION_COOKIE, mine.token)
    refused = client.post(
        f"/console/sessions/{theirs.session_id}/revoke", headers={CSRF_HEADER: mine.csrf_token}
    )
    assert refused.status_code == 404


def test_an_enrolment_link_works_once_and_not_after_it_expires(
    client: TestClient, database: Database, operator: Person
) -> None:
    with database.unit_of_work() as session:
        user = identity.find_user_by_username(session, "olivia")
        fresh = passkeys.issue_invite(session, user, lifetime=timedelta(minutes=5), now=utcnow())
        old = passkeys.issue_invite(
            session, user, lifetime=timedelta(minutes=5), now=utcnow() - timedelta(minutes=6)
        )
    started = client.post("/api/webauthn/register/options", json={"invite": fresh.token})
    assert started.status_code == 200, started.text
    options = started.json()["publicKey"]
    assert options["rp"]["id"] == "localhost"
    assert options["authenticatorSelection"]["residentKey"] == "required"

    expired = client.post("/api/webauthn/register/options", json={"invite": old.token})
    assert expired.status_code == 409
    assert "expired" in expired.json()["detail"]
    unknown = client.post("/api/webauthn/register/options", json={"invite": "kli_" + "x" * 43})
    assert unknown.status_code == 404

    with database.unit_of_work() as session:
        from kittylab.adapters.db.tables import ConsoleInvite

        row = session.get(ConsoleInvite, fresh.invite_id)
        assert row is not None
        row.used_at = utcnow()
    used = client.post("/api/webauthn/register/options", json={"invite": fresh.token})
    assert used.status_code == 409
    assert "already used" in used.json()["detail"]


def test_a_ceremony_challenge_is_spent_by_its_first_answer(client: TestClient) -> None:
    started = client.post("/api/webauthn/sign-in/options", json={})
    assert started.status_code == 200
    body = {"challengeId": started.json()["challengeId"], "credential": {"id": "nope"}}
    origin = {"Origin": "http://localhost:8000"}
    first = client.post("/api/webauthn/sign-in", json=body, headers=origin)
    assert first.status_code == 401  # no such passkey
    again = client.post("/api/webauthn/sign-in", json=body, headers=origin)
    assert again.status_code == 422
    assert "start again" in again.json()["detail"]


def test_a_ceremony_from_another_origin_is_refused(client: TestClient) -> None:
    started = client.post("/api/webauthn/sign-in/options", json={})
    body = {"challengeId": started.json()["challengeId"], "credential": {"id": "nope"}}
    refused = client.post(
        "/api/webauthn/sign-in", json=body, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 422
    assert "localhost" in refused.json()["detail"]


def test_enrolling_from_outside_the_trusted_networks_is_refused(
    remote_client: TestClient, database: Database, operator: Person
) -> None:
    with database.unit_of_work() as session:
        user = identity.find_user_by_username(session, "olivia")
        invite = passkeys.issue_invite(session, user, lifetime=timedelta(minutes=5), now=utcnow())
    refused = remote_client.post("/api/webauthn/register/options", json={"invite": invite.token})
    assert refused.status_code == 403
    assert "trusted networks" in refused.json()["detail"]


def test_a_remote_floor_shows_no_actions_and_says_why(
    remote_client: TestClient,
    client: TestClient,
    container: bootstrap.Container,
    operator: Person,
) -> None:
    issued = _session(container, operator)
    client.cookies.set(SESSION_COOKIE, issued.token)
    remote_client.cookies.set(SESSION_COOKIE, issued.token)
    local = client.get("/")
    assert local.status_code == 200
    assert "Stop the lab" in local.text
    remote = remote_client.get("/")
    assert remote.status_code == 200
    assert "Read-only here" in remote.text
    assert "Stop the lab" not in remote.text
    assert 'hx-post="/console/stop"' not in remote.text
    stop = remote_client.post("/console/stop", headers={CSRF_HEADER: issued.csrf_token})
    assert stop.status_code == 403


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": 5, "rawId": ["x"], "response": 7},
        {"rawId": "AAAA", "response": {"clientDataJSON": "!!", "userHandle": 3}},
        {"rawId": "AAAA", "type": "public-key", "response": {"attestationObject": "AAAA"}},
    ],
)
def test_malformed_ceremony_answers_are_refused_never_a_500(
    client: TestClient, database: Database, operator: Person, credential: dict[str, object]
) -> None:
    origin = {"Origin": "http://localhost:8000"}
    started = client.post("/api/webauthn/sign-in/options", json={}).json()
    signed_in = client.post(
        "/api/webauthn/sign-in",
        json={"challengeId": started["challengeId"], "credential": credential},
        headers=origin,
    )
    assert 400 <= signed_in.status_code < 500, signed_in.text
    with database.unit_of_work() as session:
        user = identity.find_user_by_username(session, "olivia")
        invite = passkeys.issue_invite(session, user, lifetime=timedelta(minutes=5), now=utcnow())
    begun = client.post("/api/webauthn/register/options", json={"invite": invite.token}).json()
    registered = client.post(
        "/api/webauthn/register",
        json={
            "invite": invite.token,
            "challengeId": begun["challengeId"],
            "credential": credential,
        },
        headers=origin,
    )
    assert 400 <= registered.status_code < 500, registered.text
