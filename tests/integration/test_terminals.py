"""Wall terminals over HTTP (issue 18, item 3): a tablet waits with a one-time code, an
admin pairs it to a zone, and then it shows that zone only and acts only for the person
who tapped their key on it. Attacks first: the terminal's cookie is not a person, a code
works once and for an admin only, another zone stays out of sight, a tap-in ends by
itself, a revoked terminal signs its person out. (The key's WebAuthn ceremony runs in a
real browser: tests/e2e/test_console_terminal.py.)"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AuditEntry,
    Passkey,
    Terminal,
    WebSession,
    Zone,
    ZonePresence,
)
from kittylab.api.app import create_app
from kittylab.api.routers.console_terminals.kiosk import TERMINAL_COOKIE
from kittylab.api.web_auth import CSRF_HEADER, SESSION_COOKIE, limits
from kittylab.config import Settings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import PresenceSource, PresenceStatus, TerminalStatus
from kittylab.people import presence, terminals
from tests.integration.conftest import Person
from tests.integration.print_lab import PrintLab


def _zone(database: Database, name: str) -> UUID:
    with database.unit_of_work() as s:
        zone_id = s.scalar(select(Zone.id).where(Zone.name == name))
    assert zone_id is not None
    return zone_id


def _waiting_code(tablet: TestClient) -> str:
    page = tablet.get("/terminal")
    assert page.status_code == 200, page.text
    found = re.search(r'id="pair-code">([A-Z0-9]{4}-[A-Z0-9]{4})<', page.text)
    assert found, page.text
    assert (tablet.cookies.get(TERMINAL_COOKIE) or "").startswith("klt_")
    return found.group(1)


WAITING_MAX = 3


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        console={"terminals_waiting_max": WAITING_MAX},
        _env_file=None,  # type: ignore[call-arg]
    )


def _browser(container: bootstrap.Container, address: str = "127.0.0.1") -> TestClient:
    """Another browser (cookies of its own) on the app under test."""
    app = getattr(container, "_terminal_test_app", None)
    if app is None:
        app = create_app(container)
        object.__setattr__(container, "_terminal_test_app", app)
    return TestClient(app, raise_server_exceptions=False, client=(address, 50001))


@pytest.fixture
def tablet(container: bootstrap.Container) -> TestClient:
    """A second browser: the tablet on the wall."""
    return _browser(container)


def _pair(client: TestClient, admin: Person, code: str, zone_id: UUID) -> dict[str, object]:
    paired = client.post(
        "/api/terminals/pair",
        headers=admin.headers,
        json={"code": code.lower().replace("-", " "), "zoneId": str(zone_id), "name": ""},
    )
    assert paired.status_code == 200, paired.text
    body: dict[str, object] = paired.json()
    return body


def test_a_tablet_shows_a_code_and_once_an_admin_pairs_it_shows_that_zone_only(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    code = _waiting_code(tablet)
    assert tablet.get("/console/terminal/status").status_code == 204  # still waiting
    laser = _zone(database, "laser-room")
    body = _pair(lab.client, admin, code, laser)
    assert body["status"] == "paired" and body["zone"] == "laser-room"
    assert body["name"] == "laser-room terminal"
    assert tablet.get("/console/terminal/status").headers.get("HX-Refresh") == "true"

    kiosk = tablet.get("/terminal")
    assert kiosk.status_code == 200
    assert 'data-device="laser-door"' in kiosk.text
    assert "Tap your security key" in kiosk.text
    for elsewhere in ("welding-door", "cnc-door", "bench-lamp", "prusa-mk4"):
        assert f'data-device="{elsewhere}"' not in kiosk.text
    # No console navigation, no action on its own: it acts only for who taps in.
    assert 'href="/safety"' not in kiosk.text
    assert "/console/zones/" not in kiosk.text
    with database.unit_of_work() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "terminal.paired"))
    assert entry is not None and entry.actor_id == admin.user_id
    assert entry.details["zone"] == "laser-room"
    listed = lab.client.get("/api/terminals", headers=admin.headers).json()
    assert [t["name"] for t in listed] == ["laser-room terminal"]


def test_a_code_pairs_once_for_an_admin_only_and_not_after_it_expires(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    code = _waiting_code(tablet)
    laser = _zone(database, "laser-room")
    body = {"code": code, "zoneId": str(laser)}
    refused = lab.client.post("/api/terminals/pair", headers=lab.operator.headers, json=body)
    assert refused.status_code == 403, refused.text
    wrong = lab.client.post(
        "/api/terminals/pair", headers=admin.headers, json=body | {"code": "AAAA-AAAA"}
    )
    assert wrong.status_code == 422 and "code" in wrong.text
    _pair(lab.client, admin, code, laser)
    again = lab.client.post("/api/terminals/pair", headers=admin.headers, json=body)
    assert again.status_code == 422, again.text

    other = _browser(lab.container)
    late = _waiting_code(other)
    with database.unit_of_work() as s:
        s.execute(
            update(Terminal)
            .where(Terminal.status == TerminalStatus.WAITING)
            .values(code_expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = lab.client.post(
        "/api/terminals/pair", headers=admin.headers, json=body | {"code": late}
    )
    assert expired.status_code == 422, expired.text
    # The tablet learns its code expired and reloads for a new one.
    assert other.get("/console/terminal/status").headers.get("HX-Refresh") == "true"
    assert _waiting_code(other) != late


def test_the_terminal_cookie_is_not_a_person_and_sees_nothing_outside_its_zone(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    _pair(lab.client, admin, _waiting_code(tablet), _zone(database, "laser-room"))
    welding = _zone(database, "welding-bay")
    for path in (
        "/api/me",
        "/api/devices",
        "/console/events",
        f"/console/zones/{welding}/snapshot",
    ):
        answer = tablet.get(path, follow_redirects=False)
        assert answer.status_code in (401, 303), (path, answer.status_code)
    assert tablet.get("/", follow_redirects=False).headers["location"] == "/sign-in"
    stop = tablet.post(f"/console/zones/{welding}/stop")
    assert stop.status_code == 401, stop.text
    assert tablet.get("/console/terminal/panel").status_code == 200
    # A waiting tablet's cookie opens the kiosk's reads neither.
    waiting = _browser(lab.container)
    _waiting_code(waiting)
    assert waiting.get("/console/terminal/panel").status_code == 401
    # From outside the lab's networks, no terminal at all.
    outside = _browser(lab.container, "203.0.113.7")
    outside.cookies.set(TERMINAL_COOKIE, tablet.cookies[TERMINAL_COOKIE])
    assert outside.get("/console/terminal/panel").status_code == 403
    assert "lab&#39;s own network" in outside.get("/terminal").text


def _newest_presence(session: Session, user_id: UUID) -> ZonePresence | None:
    return session.scalars(
        select(ZonePresence)
        .where(ZonePresence.user_id == user_id)
        .order_by(ZonePresence.observed_at.desc())
    ).first()


def _enrolled_key(database: Database, user_id: UUID) -> Passkey:
    """A security key enrolled for ``user_id`` (its ceremony is the browser test's)."""
    with database.unit_of_work() as s:
        key = Passkey(
            user_id=user_id, credential_id=f"key-{user_id}", public_key=b"\x00", name="key"
        )
        s.add(key)
        s.flush()
        s.expunge(key)
    return key


def _tap(
    container: bootstrap.Container, database: Database, tablet: TestClient, key: Passkey
) -> terminals.TapIn:
    with database.unit_of_work() as s:
        terminal = s.scalar(select(Terminal).where(Terminal.status == TerminalStatus.PAIRED))
        assert terminal is not None
        tapped = terminals.tap_in(
            s, terminal, s.merge(key), limits=limits(container.settings.console), now=utcnow()
        )
    tablet.cookies.set(SESSION_COOKIE, tapped.session.token)
    return tapped


def test_a_tap_in_is_a_terminal_presence_counted_where_the_zone_trusts_it_and_ends_by_itself(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    laser = _zone(database, "laser-room")
    _pair(lab.client, admin, _waiting_code(tablet), laser)
    ttl = timedelta(minutes=10)
    with database.unit_of_work() as s:
        presence.record_manual(
            s,
            zone_id=laser,
            user_id=lab.operator.user_id,
            status=PresenceStatus.PRESENT,
            now=utcnow(),
        )
        # A self check-in does not count in a high-hazard zone (issue 13).
        assert not presence.counts_as_present(s, lab.operator.user_id, laser, utcnow(), ttl)
    tapped = _tap(lab.container, database, tablet, _enrolled_key(database, lab.operator.user_id))
    with database.unit_of_work() as s:
        newest = _newest_presence(s, lab.operator.user_id)
        assert newest is not None and newest.source is PresenceSource.TERMINAL
        # A high-hazard zone trusts its wall terminal only once it declares so.
        assert not presence.counts_as_present(s, lab.operator.user_id, laser, utcnow(), ttl)
        s.execute(
            update(Zone)
            .where(Zone.id == laser)
            .values(presence_sources=["unifi", "confirmed", "override", "terminal"])
        )
    with database.unit_of_work() as s:
        assert presence.counts_as_present(s, lab.operator.user_id, laser, utcnow(), ttl)
        recorded = s.scalar(
            select(AuditEntry)
            .where(AuditEntry.action == "presence.recorded")
            .order_by(AuditEntry.seq.desc())
        )
    assert recorded is not None and recorded.details["source"] == "terminal"
    page = tablet.get("/terminal")
    assert "is checked in here" in page.text and tapped.session.csrf_token in page.text
    assert f"/console/zones/{laser}/stop" in page.text  # the zone's stop, as the person
    me = tablet.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "olivia"

    # Unused for the tap-in's idle time: signed out, the tablet back to "tap your key".
    idle = lab.container.settings.console.terminal_tap_seconds
    with database.unit_of_work() as s:
        s.execute(
            update(WebSession)
            .where(WebSession.id == tapped.session.session_id)
            .values(last_seen_at=utcnow() - timedelta(seconds=idle + 1))
        )
    assert tablet.get("/api/me").status_code == 401
    assert "Tap your security key" in tablet.get("/terminal").text


def test_the_kiosk_reads_do_not_keep_a_tap_in_alive(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    _pair(lab.client, admin, _waiting_code(tablet), _zone(database, "laser-room"))
    tapped = _tap(lab.container, database, tablet, _enrolled_key(database, lab.operator.user_id))
    past = utcnow() - timedelta(seconds=30)
    with database.unit_of_work() as s:
        s.execute(
            update(WebSession)
            .where(WebSession.id == tapped.session.session_id)
            .values(last_seen_at=past)
        )
    for path in ("/terminal", "/console/terminal/panel", "/console/terminal/status"):
        tablet.get(path)
    with database.unit_of_work() as s:
        seen = s.scalar(
            select(WebSession.last_seen_at).where(WebSession.id == tapped.session.session_id)
        )
    assert seen == past


def test_check_out_on_the_terminal_records_leaving_and_ends_the_tap_in(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    laser = _zone(database, "laser-room")
    _pair(lab.client, admin, _waiting_code(tablet), laser)
    tapped = _tap(lab.container, database, tablet, _enrolled_key(database, lab.operator.user_id))
    no_csrf = tablet.post("/console/terminal/check-out")
    assert no_csrf.status_code == 403, no_csrf.text
    out = tablet.post(
        "/console/terminal/check-out", headers={CSRF_HEADER: tapped.session.csrf_token}
    )
    assert out.status_code == 204, out.text
    with database.unit_of_work() as s:
        newest = _newest_presence(s, lab.operator.user_id)
        assert newest is not None
        assert (newest.source, newest.status) == (PresenceSource.TERMINAL, PresenceStatus.VACATED)
    tablet.cookies.set(SESSION_COOKIE, tapped.session.token)
    assert tablet.get("/api/me").status_code == 401


def test_a_console_session_on_the_tablet_does_not_act_through_the_kiosk(
    admin: Person,
    lab: PrintLab,
    tablet: TestClient,
    database: Database,
    container: bootstrap.Container,
) -> None:
    """An admin signed in on the tablet's browser is not "the person who tapped in": the
    kiosk shows no actions and its check-out refuses."""
    _pair(lab.client, admin, _waiting_code(tablet), _zone(database, "laser-room"))
    from kittylab.people import web_sessions

    with database.unit_of_work() as s:
        issued = web_sessions.start(
            s,
            admin.user_id,
            passkey_id=None,
            limits=limits(container.settings.console),
            now=utcnow(),
        )
    tablet.cookies.set(SESSION_COOKIE, issued.token)
    page = tablet.get("/terminal")
    assert "Tap your security key" in page.text and "/console/zones/" not in page.text
    refused = tablet.post("/console/terminal/check-out", headers={CSRF_HEADER: issued.csrf_token})
    assert refused.status_code == 403, refused.text


def test_revoking_a_terminal_signs_its_person_out_and_the_tablet_waits_again(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    body = _pair(lab.client, admin, _waiting_code(tablet), _zone(database, "laser-room"))
    _tap(lab.container, database, tablet, _enrolled_key(database, lab.operator.user_id))
    assert tablet.get("/api/me").status_code == 200
    refused = lab.client.post(f"/api/terminals/{body['id']}/revoke", headers=lab.operator.headers)
    assert refused.status_code == 403
    revoked = lab.client.post(f"/api/terminals/{body['id']}/revoke", headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert tablet.get("/api/me").status_code == 401
    assert tablet.get("/console/terminal/panel").status_code == 401
    assert re.search(r'id="pair-code">', tablet.get("/terminal").text)  # a new code
    with database.unit_of_work() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "terminal.revoked"))
    assert entry is not None and entry.details["signed_out"] == 1


def test_too_many_waiting_tablets_are_refused(
    lab: PrintLab, container: bootstrap.Container
) -> None:
    for _ in range(WAITING_MAX):
        _waiting_code(_browser(container))
    extra = _browser(container).get("/terminal")
    assert "already waiting to be paired" in extra.text
    assert TERMINAL_COOKIE not in extra.cookies


def test_a_tap_in_acts_only_through_the_terminal_and_on_its_own_zone(
    admin: Person, lab: PrintLab, tablet: TestClient, database: Database
) -> None:
    """Someone who walks up to the tablet within the tap-in's minute cannot use it as a
    signed-in console: the floor, the API at large and another zone's stop are refused."""
    laser = _zone(database, "laser-room")
    welding = _zone(database, "welding-bay")
    _pair(lab.client, admin, _waiting_code(tablet), laser)
    tapped = _tap(lab.container, database, tablet, _enrolled_key(database, lab.operator.user_id))
    csrf = {CSRF_HEADER: tapped.session.csrf_token}
    assert tablet.get("/api/me").status_code == 200
    for path in ("/api/devices", "/api/presence", "/console/events"):
        refused = tablet.get(path)
        assert refused.status_code == 403, (path, refused.text)
        assert "wall terminal" in refused.json()["detail"]
    elsewhere = tablet.post(f"/console/zones/{welding}/stop", headers=csrf)
    assert elsewhere.status_code == 403 and "own zone" in elsewhere.text
    lab_stop = tablet.post("/console/stop", headers=csrf)
    assert lab_stop.status_code == 403, lab_stop.text
    here = tablet.post(f"/console/zones/{laser}/stop", headers=csrf)
    assert here.status_code == 200 and "Stop sent:" in here.text
