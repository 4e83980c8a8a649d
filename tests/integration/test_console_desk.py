"""The safety desk's boards and confirmations over HTTP (issue 17, item 5), with the
console's cookie sessions: what each person sees and may do is the API's rule, a held lab
change reads as a diff, and from outside the lab's networks the desk only reads. (Passkey
approvals, themes, the service worker and accessibility run in a real browser:
tests/e2e/test_console_safety_desk.py.)"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.db.tables import (
    AuditEntry,
    Device,
    DeviceLock,
    RoleGrant,
    SafetyEvent,
    User,
    Zone,
)
from kittylab.api.app import create_app
from kittylab.api.web_auth import CSRF_HEADER, SESSION_COOKIE, limits
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import HazardLevel, OnlineState, Role, SafetyStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity, web_sessions
from kittylab.safety import keys


@dataclass(frozen=True)
class Signed:
    user_id: UUID
    token: str
    csrf: str
    api_token: str


class Desk:
    """The demo lab, and each of its people signed in to the console."""

    def __init__(self, client: TestClient, container: bootstrap.Container) -> None:
        self.client = client
        self.container = container
        self.people: dict[str, Signed] = {}

    def sign_in(self, username: str) -> Signed:
        with self.container.database.unit_of_work() as session:
            user = identity.find_user_by_username(session, username)
            assert user is not None
            issued = web_sessions.start(
                session,
                user.id,
                passkey_id=None,
                limits=limits(self.container.settings.console),
                now=utcnow(),
            )
            api = identity.issue_token(session, user).token
        self.people[username] = Signed(user.id, issued.token, issued.csrf_token, api)
        return self.people[username]

    def get(self, username: str, url: str) -> str:
        self.client.cookies.set(SESSION_COOKIE, self.people[username].token)
        answer = self.client.get(url)
        assert answer.status_code == 200, answer.text
        return answer.text

    def post(self, username: str, url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        person = self.people[username]
        self.client.cookies.set(SESSION_COOKIE, person.token)
        answer = self.client.post(url, data=data, headers={CSRF_HEADER: person.csrf})
        return answer.status_code, answer.text


@pytest.fixture
def desk(
    client: TestClient, container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> Desk:
    with database.unit_of_work() as session:
        apply_manifest(session, load_manifest(demo_lab_path), container.clock())
    found = Desk(client, container)
    for username in ("ada", "sam", "sasha", "olivia"):
        found.sign_in(username)
    return found


def _device(database: Database, external_id: str) -> UUID:
    with database.unit_of_work() as session:
        found = session.scalar(select(Device.id).where(Device.external_id == external_id))
    assert found is not None
    return found


def _visible(html: str) -> str:
    """The page's text, roughly as read (tags out, spaces folded)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_held_lab_change_reads_as_a_diff_and_is_denied_from_the_desk(
    desk: Desk, database: Database, demo_lab_path: Path
) -> None:
    text = demo_lab_path.read_text()
    weaker = text.replace(
        "  - name: cnc-room\n    hazard_level: medium",
        "  - name: cnc-room\n    hazard_level: low",
        1,
    )
    assert weaker != text
    sent = desk.client.post(
        "/api/lab/apply",
        json={"manifest": weaker},
        headers={"Authorization": f"Bearer {desk.people['ada'].api_token}"},
    )
    assert sent.status_code == 202, sent.text
    event_id = sent.json()["eventId"]

    sams = _visible(desk.get("sam", "/safety"))
    assert "A change to the lab" in sams
    assert "⚠ What weakens safety" in sams and "cnc-room" in sams
    assert "zone cnc-room changed ⚠ weakens safety" in sams
    assert "hazard level medium low" in sams  # the field, now, after approval
    assert "Approve with my passkey" in sams  # sam has the safety role and did not send it
    adas = _visible(desk.get("ada", "/safety"))
    assert "You asked for this" in adas and "Approve with my passkey" not in adas

    status, card = desk.post(
        "sam", f"/console/safety/events/{event_id}/deny", {"reason": "not today"}
    )
    assert status == 200, card
    assert "denied" in card
    with database.unit_of_work() as session:
        event = session.get(SafetyEvent, UUID(event_id))
        zone = session.scalar(select(Zone).where(Zone.name == "cnc-room"))
        assert event is not None and event.status is SafetyStatus.DENIED
        assert zone is not None and zone.hazard_level is HazardLevel.MEDIUM  # nothing applied


def test_the_locks_board_places_removes_and_overrides_by_the_lockout_rules(
    desk: Desk, database: Database
) -> None:
    spindle = str(_device(database, "cnc-spindle"))
    status, board = desk.post(
        "olivia", "/console/safety/locks", {"deviceId": spindle, "reason": "new bit"}
    )
    assert status == 200, board
    assert "Your lock is on" in board and "new bit" in board and "Remove my lock" in board

    # An admin is not the safety role: the board says why, and the server refuses anyway.
    adas = _visible(desk.get("ada", "/safety/locks"))
    assert "the admin role cannot override" in adas
    with database.unit_of_work() as session:
        lock_id = session.scalar(select(DeviceLock.id).where(DeviceLock.removed_at.is_(None)))
    refused, problem = desk.post(
        "ada", f"/console/safety/locks/{lock_id}/remove", {"overrideReason": "x"}
    )
    assert refused == 403, problem

    assert "Override" in desk.get("sam", "/safety/locks")
    status, board = desk.post(
        "sam", f"/console/safety/locks/{lock_id}/remove", {"overrideReason": "Olivia went home"}
    )
    assert status == 200, board
    assert "Overridden" in board and "No device is locked" in board and "override" in board
    with database.unit_of_work() as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
    assert actions[-2:] == ["lock.placed", "lock.override"]

    # Your own comes off without a reason; an empty reason to place one is refused by name.
    desk.post("olivia", "/console/safety/locks", {"deviceId": spindle, "reason": "again"})
    with database.unit_of_work() as session:
        own = session.scalar(select(DeviceLock.id).where(DeviceLock.removed_at.is_(None)))
    status, board = desk.post("olivia", f"/console/safety/locks/{own}/remove")
    assert status == 200 and "Your lock is off" in board
    status, problem = desk.post(
        "olivia", "/console/safety/locks", {"deviceId": spindle, "reason": ""}
    )
    assert status == 422 and "reason" in problem


def test_the_presence_board_says_who_is_where_how_and_whether_it_counts(
    desk: Desk, database: Database
) -> None:
    with database.unit_of_work() as session:
        laser = session.scalar(select(Zone.id).where(Zone.name == "laser-room"))
    status, board = desk.post("olivia", f"/console/safety/presence/{laser}/present")
    assert status == 200, board
    seen = _visible(board)
    # A bare check-in does not count in a high-hazard zone.
    assert "Olivia Operator checked in" in seen and "does not count here" in seen
    assert "Check out of laser-room" in seen
    assert "Olivia Operator" in _visible(desk.get("sam", "/safety/presence"))
    status, board = desk.post("olivia", f"/console/safety/presence/{laser}/vacated")
    assert status == 200 and "Check in to laser-room" in board
    status, _ = desk.post("olivia", f"/console/safety/presence/{laser}/unknown")
    assert status == 422


def _waiting_key(desk: Desk, owner: str) -> UUID:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with desk.container.database.unit_of_work() as session:
        row = keys.add_key(
            session,
            user_id=desk.people[owner].user_id,
            name="bench",
            public_key="ed25519:" + base64.b64encode(public).decode(),
            actor_id=desk.people[owner].user_id,
            now=utcnow(),
            awaiting_confirmation=True,
        )
        return row.id


def test_confirmations_follow_the_two_person_rules(desk: Desk, database: Database) -> None:
    asked = desk.client.post(
        "/api/users",
        json={"username": "gus", "displayName": "Gus Green", "roles": ["operator", "safety"]},
        headers={"Authorization": f"Bearer {desk.people['ada'].api_token}"},
    )
    assert asked.status_code == 201, asked.text
    gus = UUID(asked.json()["id"])
    key_id = _waiting_key(desk, "sasha")

    # The one who asked withdraws, never confirms; the key's owner never confirms it.
    adas = _visible(desk.get("ada", "/safety/confirmations"))
    assert "a role grant is confirmed by a second person, not the one who asked" in adas
    assert "Withdraw" in adas
    sashas = _visible(desk.get("sasha", "/safety/confirmations"))
    assert "yours: someone else confirms it" in sashas
    # An operator sees neither list.
    assert "Gus Green" not in desk.get("olivia", "/safety/confirmations")
    assert "Gus Green" in _visible(desk.get("sam", "/safety/confirmations"))
    assert "Gus Green" in desk.get("sam", "/console/safety/confirmations")  # re-read live
    desk.client.cookies.set(SESSION_COOKIE, desk.people["olivia"].token)
    assert desk.client.get("/console/safety/confirmations").status_code == 403

    status, row = desk.post("sam", f"/console/safety/keys/{key_id}/confirm")
    assert status == 200 and "signs approvals from now on" in row
    with database.unit_of_work() as session:
        grant_id = session.scalars(select(RoleGrant.id).where(RoleGrant.status == "pending")).one()
    status, problem = desk.post("ada", f"/console/safety/role-grants/{grant_id}/confirm")
    assert status == 403, problem
    status, row = desk.post("sam", f"/console/safety/role-grants/{grant_id}/confirm")
    assert status == 200 and "Granted" in row
    with database.unit_of_work() as session:
        user = session.get(User, gus)
        assert user is not None and Role.SAFETY in user.roles


def test_the_audit_page_lists_entries_and_says_where_the_chain_breaks(
    desk: Desk, database_url: str
) -> None:
    page = _visible(desk.get("sam", "/safety/audit?action=user.*"))
    assert "user.added" in page and "lock.placed" not in page
    assert "Checking the hash chain" in page
    assert "✓ Verified" in desk.get("sam", "/console/safety/audit/chain")
    # Only the safety and admin roles read the log.
    assert "read by the safety and admin roles" in desk.get("olivia", "/safety/audit")
    desk.client.cookies.set(SESSION_COOKIE, desk.people["olivia"].token)
    assert desk.client.get("/console/safety/audit/chain").status_code == 403
    bad = desk.client.get("/safety/audit?action=DROP TABLE")
    assert bad.status_code == 422 and "action" in bad.text

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        try:
            conn.execute("UPDATE audit_log SET details = '{\"edited\": true}' WHERE seq = 3")
        finally:
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    chain = _visible(desk.get("sam", "/console/safety/audit/chain"))
    assert "✗ Broken at entry 3" in chain


@pytest.fixture
def remote_client(container: bootstrap.Container) -> Iterator[TestClient]:
    with TestClient(
        create_app(container), raise_server_exceptions=False, client=("203.0.113.7", 50000)
    ) as c:
        yield c


def test_a_remote_desk_reads_every_board_but_shows_no_action(
    desk: Desk, remote_client: TestClient, database: Database
) -> None:
    spindle = str(_device(database, "cnc-spindle"))
    desk.post("olivia", "/console/safety/locks", {"deviceId": spindle, "reason": "new bit"})
    _waiting_key(desk, "sasha")
    remote = Desk(remote_client, desk.container)
    remote.people = desk.people
    for url in ("/safety", "/safety/confirmations", "/safety/locks", "/safety/presence"):
        page = remote.get("sam", url)
        assert "Read-only here" in page, url
        main = page.split('<main id="main">')[1]  # the bar's sign-out is a write that works
        assert "hx-post" not in main and "<form" not in main and "<button" not in main, url
    assert "new bit" in remote.get("sam", "/safety/locks")
    status, body = remote.post("sam", "/console/safety/locks", {"deviceId": spindle, "reason": "x"})
    assert status == 403 and "outside the lab's trusted networks" in body
    # The one button a remote page keeps works: signing out only takes access away.
    status, _ = remote.post("sam", "/console/sign-out")
    assert status == 204


def test_the_console_is_installable(client: TestClient) -> None:
    manifest = client.get("/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    body = manifest.json()
    assert body["start_url"] == "/" and body["display"] == "standalone"
    assert {i["sizes"] for i in body["icons"]} >= {"192x192", "512x512"}
    for icon in body["icons"]:
        assert client.get(icon["src"]).headers["content-type"] == "image/png"
    worker = client.get("/sw.js")
    assert worker.status_code == 200 and worker.headers["service-worker-allowed"] == "/"
    for path in re.findall(r'"(/[^"]+)"', worker.text.split("const SHELL = ")[1].split(";")[0]):
        assert client.get(path).status_code == 200, path
    offline = client.get("/offline")
    assert offline.status_code == 200 and "Reconnecting" in offline.text


def test_the_floor_tiles_show_locks_and_place_and_remove_ones_own(
    desk: Desk, remote_client: TestClient, database: Database
) -> None:
    spindle = _device(database, "cnc-spindle")
    with database.unit_of_work() as session:
        device = session.get(Device, spindle)
        assert device is not None
        device.online_state = OnlineState.ONLINE  # so its quick actions show
    tile = f"/console/safety/locks/tiles/{spindle}"
    status, locks = desk.post("olivia", f"{tile}/place", {"reason": ""})
    assert status == 422 and "reason" in locks
    status, locks = desk.post("olivia", f"{tile}/place", {"reason": "new bit"})
    assert status == 200, locks
    seen = _visible(locks)
    assert "Your lock is on" in seen and "Olivia Operator" in seen and "new bit" in seen
    assert "Remove my lock" in seen and "Lock this device" not in seen
    assert "refused: locked" in locks and 'hx-swap-oob="true"' in locks  # power_on, refused

    # Sam sees it on the floor's tile, with "On" refused by the lock, and may lock it too.
    floor = desk.get("sam", "/")
    spindle_tile = floor.split(f'id="tile-{spindle}"')[1].split("</article>")[0]
    seen = _visible(spindle_tile)
    assert "locked by Olivia Operator" in seen and "new bit" in seen and "since" in seen
    assert "refused: locked" in seen and "Remove my lock" not in seen
    assert "Lock this device" in seen
    with database.unit_of_work() as session:
        lock_id = session.scalar(select(DeviceLock.id).where(DeviceLock.removed_at.is_(None)))
    refused, problem = desk.post("sam", f"{tile}/{lock_id}/remove")
    assert refused == 403 and "Olivia" in problem, problem

    # From outside the lab's networks: the lock shows, its buttons do not.
    remote = Desk(remote_client, desk.container)
    remote.people = desk.people
    far = remote.get("olivia", "/").split(f'id="tile-{spindle}"')[1].split("</article>")[0]
    assert "new bit" in far and "Remove my lock" not in far and "Lock this device" not in far
    status, _ = remote.post("olivia", f"{tile}/{lock_id}/remove")
    assert status == 403

    status, locks = desk.post("olivia", f"{tile}/{lock_id}/remove")
    assert status == 200 and "Your lock is off" in locks and "new bit" not in locks
    assert "refused: locked" not in locks and "Lock this device" in locks
