"""The audit log on the real database: concurrent appends form one chain, jsonb round
trips hash identically, tampering the way an attacker would (superuser, trigger disabled)
is reported at exactly the entry it hit by ``verify_chain``, ``kittylab audit verify`` and
the API, and the API is for the safety and admin roles only."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.db.tables import AuditEntry, User
from kittylab.cli.main import app as cli
from kittylab.people import identity
from kittylab.records import audit
from kittylab.safety.audit_chain import BreakKind
from tests.integration.conftest import Person

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def _append(database: Database, n: int, action: str = "lock.placed") -> None:
    with database.unit_of_work() as session:
        for i in range(n):
            audit.append(
                session,
                action=action,
                actor_id=None,
                now=T0 + timedelta(seconds=i),
                subject_type="device",
                subject_id=f"dev-{i}",
                details={"reason": f"service {i}", "i": i},
            )


def _tamper(database_url: str, sql: str) -> None:
    """What an attacker with the database's superuser does: switch the append-only
    trigger off, change the table, switch it back on."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        try:
            conn.execute(sql)  # type: ignore[arg-type]
        finally:
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


def _breaks(database: Database, anchors: dict[int, str] | None = None) -> list[tuple[int, str]]:
    with database.unit_of_work() as session:
        report = audit.verify_chain(session, anchors, batch=7)  # several batches
    return [(b.seq, b.kind.value) for b in report.breaks]


@pytest.fixture
def run_cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KITTYLAB_LOG_JSON", "false")
    return CliRunner()


# --- the chain on the real database ------------------------------------------------------


def test_appends_from_eight_threads_form_one_intact_chain(database: Database) -> None:
    per_thread, threads = 15, 8
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def append_then_fail() -> None:
        try:
            with database.unit_of_work() as session:
                audit.append(session, action="presence.recorded", actor_id=None, now=T0)
                raise LookupError("rolled back")
        except LookupError:
            pass

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with database.unit_of_work() as session:
                    audit.append(
                        session,
                        action="presence.recorded",
                        actor_id=None,
                        now=datetime.now(UTC),
                        subject_id=f"w{worker}-{i}",
                        details={"worker": worker, "i": i},
                    )
                # A rolled-back append leaves no trace and no gap.
                if i % 5 == 0:
                    append_then_fail()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors, errors
    with database.unit_of_work() as session:
        seqs = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
        subjects = set(session.scalars(select(AuditEntry.subject_id)).all())
        report = audit.verify_chain(session, batch=16)
    assert seqs == list(range(1, per_thread * threads + 1))
    assert len(subjects) == per_thread * threads
    assert report.intact, report.breaks
    assert report.entries == report.head_seq == per_thread * threads


def test_details_and_times_read_back_from_jsonb_hash_identically(database: Database) -> None:
    details = {
        "floats": [0.1, 2.5, 1e20, 1.5e300, 1e-7, -0.0, 1.0, 3.141592653589793],
        "big": 10**30,
        "unicode": "Grüße — 温度 🐱 \u00e9 vs e\u0301",
        "nested": {"b": [[1, {"z": None, "a": True}], []], "a": {"x": [False]}},
        "device_id": UUID(int=42),
        "at": datetime(2026, 5, 5, 5, 5, 5, 999999, tzinfo=UTC),
    }
    with database.unit_of_work() as session:
        stored = audit.append(
            session,
            action="safety.approval",
            actor_id=None,
            now=datetime(2026, 3, 1, 9, 0, 0, 1, tzinfo=UTC),
            details=details,
        )
        audit.append(session, action="safety.approved", actor_id=None, now=T0)
        written = stored.details
    with database.unit_of_work() as session:
        read = session.scalar(select(AuditEntry.details).where(AuditEntry.seq == 1))
        report = audit.verify_chain(session)
    assert report.intact, report.breaks
    assert read == written
    assert read is not None
    assert read["floats"][2] == 10**20 and read["unicode"] == details["unicode"]


def test_the_triggers_refuse_updates_deletes_and_truncate(database: Database) -> None:
    _append(database, 2)
    for statement in (
        "UPDATE audit_log SET action = 'x.y'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with (
            pytest.raises(IntegrityError, match="audit_log is append-only"),
            database.unit_of_work() as session,
        ):
            session.execute(text(statement))
    assert _breaks(database) == []


def test_an_edited_details_field_is_reported_at_that_entry(
    database: Database, database_url: str, run_cli: CliRunner
) -> None:
    _append(database, 20)
    _tamper(
        database_url,
        "UPDATE audit_log SET details = jsonb_set(details, '{reason}', '\"nothing\"') "
        "WHERE seq = 17",
    )
    assert _breaks(database) == [(17, "edited")]
    result = run_cli.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == ["entry 17: its content does not match its hash (edited)"]
    assert "BROKEN: 1 problem in 20 entries" in result.stderr


def test_a_deleted_row_is_reported_as_missing_and_unlinked(
    database: Database, database_url: str, run_cli: CliRunner
) -> None:
    _append(database, 10)
    _tamper(database_url, "DELETE FROM audit_log WHERE seq IN (5, 6)")
    assert _breaks(database) == [(5, "missing"), (7, "unlinked")]
    result = run_cli.invoke(cli, ["audit", "verify", "--json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["intact"] is False and body["entries"] == 8
    assert body["breaks"][0]["problem"] == "entries 5..6 are missing (deleted)"
    assert body["breaks"][1]["problem"].startswith("entry 7: does not link")


def test_deleting_the_first_entry_is_caught(database: Database, database_url: str) -> None:
    _append(database, 4)
    _tamper(database_url, "DELETE FROM audit_log WHERE seq = 1")
    assert _breaks(database) == [(1, "missing"), (2, "unlinked")]


def test_truncation_is_caught_only_with_the_head_recorded_elsewhere(
    database: Database, database_url: str, run_cli: CliRunner
) -> None:
    _append(database, 6)
    first = run_cli.invoke(cli, ["audit", "verify"])
    assert first.exit_code == 0, first.output
    head = first.stdout.strip().rsplit(" ", 1)[1]
    assert first.stdout.startswith("audit chain intact: 6 entries, head ")
    _tamper(database_url, "DELETE FROM audit_log WHERE seq >= 5")
    assert run_cli.invoke(cli, ["audit", "verify"]).exit_code == 0  # the chain alone: blind
    anchored = run_cli.invoke(cli, ["audit", "verify", "--anchor", f"6:{head}"])
    assert anchored.exit_code == 1
    assert anchored.stdout.startswith("entry 6: was recorded with hash")
    bad = run_cli.invoke(cli, ["audit", "verify", "--anchor", "six:abc"])
    assert bad.exit_code == 2
    assert "--anchor" in bad.output


def test_cli_verify_on_an_empty_log_is_intact(run_cli: CliRunner, database: Database) -> None:
    result = run_cli.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "audit chain intact: 0 entries, head " + "0" * 64


# --- safety-relevant acts that now leave entries ----------------------------------------


def test_user_and_token_changes_are_audited_without_the_token(
    database: Database, client: TestClient, admin: Person, safety_lead: Person
) -> None:
    created = client.post(
        "/api/users",
        json={"username": "erin", "displayName": "Erin", "roles": ["operator"]},
        headers=admin.headers,
    ).json()
    erin = created["id"]
    # Issue 13: the safety role asked for by one admin waits for a second person.
    asked = client.patch(
        f"/api/users/{erin}", json={"roles": ["operator", "safety"]}, headers=admin.headers
    )
    assert asked.status_code == 200
    assert asked.json()["pendingRoles"] == ["safety"]
    # Asking again logs nothing new.
    client.patch(
        f"/api/users/{erin}", json={"roles": ["operator", "safety"]}, headers=admin.headers
    )
    [grant] = client.get("/api/role-grants", headers=safety_lead.headers).json()["items"]
    confirmed = client.post(f"/api/role-grants/{grant['id']}/confirm", headers=safety_lead.headers)
    assert confirmed.status_code == 200
    # Erin's first token comes from the host; she mints the next herself.
    with database.unit_of_work() as session:
        user = session.get(User, UUID(erin))
        assert user is not None
        first = identity.issue_token(session, user)
    minted = client.post(
        f"/api/users/{erin}/tokens",
        json={"label": "laptop"},
        headers={"Authorization": f"Bearer {first.token}"},
    ).json()
    client.delete(f"/api/users/{erin}/tokens/{minted['tokenId']}", headers=admin.headers)
    client.delete(f"/api/users/{erin}/tokens/{minted['tokenId']}", headers=admin.headers)
    with database.unit_of_work() as session:
        rows = audit.search(session, audit.AuditFilter(actor_id=admin.user_id), limit=100)
        by_safety = audit.search(
            session, audit.AuditFilter(actor_id=safety_lead.user_id), limit=100
        )
        by_erin = audit.search(session, audit.AuditFilter(actor_id=UUID(erin)), limit=100)
        everything = session.execute(text("SELECT string_agg(details::text, ' ') FROM audit_log"))
        dump = everything.scalar_one()
        assert audit.verify_chain(session).intact
    acts = [(r.entry.action, r.entry.subject_id) for r in reversed(rows)]
    assert acts == [
        ("user.added", erin),
        ("role.requested", erin),
        ("token.revoked", minted["tokenId"]),
    ]
    [granted] = by_safety
    assert (granted.entry.action, granted.entry.subject_id) == ("role.granted", erin)
    assert granted.entry.details["roles"] == {"from": ["operator"], "to": ["operator", "safety"]}
    assert granted.entry.details["requested_by"] == str(admin.user_id)
    [issued] = by_erin
    assert issued.entry.action == "token.issued"
    assert issued.entry.details == {
        "user_id": erin,
        "username": "erin",
        "label": "laptop",
        "minted_with": str(first.token_id),
    }
    assert minted["token"] not in dump
    assert first.token not in dump
    assert admin.token not in dump


def test_cli_users_add_is_audited_and_listed(run_cli: CliRunner, database: Database) -> None:
    added = run_cli.invoke(cli, ["users", "add", "zoe", "--name", "Zoe", "--role", "admin"])
    assert added.exit_code == 0, added.output
    issued = run_cli.invoke(cli, ["users", "token", "zoe"])
    assert issued.exit_code == 0, issued.output
    listed = run_cli.invoke(cli, ["audit", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["seq", "time", "(UTC)", "actor", "action", "subject", "details"]
    assert "user.added" in lines[1] and '"username":"zoe"' in lines[1]
    assert "token.issued" in lines[2] and issued.stdout.strip() not in listed.stdout
    only = run_cli.invoke(cli, ["audit", "list", "--action", "token.*", "--json"])
    assert [e["action"] for e in json.loads(only.stdout)] == ["token.issued"]
    unknown = run_cli.invoke(cli, ["audit", "list", "--actor", "nobody"])
    assert unknown.exit_code == 1
    assert "nobody" in unknown.output


# --- the API -----------------------------------------------------------------------------


def test_the_audit_api_is_for_safety_and_admin_only(
    client: TestClient, admin: Person, safety_lead: Person, operator: Person
) -> None:
    for path in ("/api/audit", "/api/audit/verify"):
        assert client.get(path).status_code == 401
        refused = client.get(path, headers=operator.headers)
        assert refused.status_code == 403
        assert "safety or admin" in refused.json()["detail"]
        assert client.get(path, headers=safety_lead.headers).status_code == 200
        assert client.get(path, headers=admin.headers).status_code == 200


def test_the_audit_api_filters_and_pages_by_seq(
    client: TestClient, database: Database, safety_lead: Person
) -> None:
    _append(database, 7, action="lock.placed")
    _append(database, 3, action="lock.removed")
    # The fixtures' own user.added and token.issued come first (seq 1, 2).
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 4, "action": "lock.*"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/audit", params=params, headers=safety_lead.headers).json()
        seen += [item["seq"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(range(12, 2, -1))
    removed = client.get(
        "/api/audit", params={"action": "lock.removed"}, headers=safety_lead.headers
    ).json()["items"]
    assert [i["seq"] for i in removed] == [12, 11, 10]
    item = removed[0]
    assert set(item) >= {"occurredAt", "actorUsername", "subjectId", "details", "entryHash"}
    by_subject = client.get(
        "/api/audit", params={"subjectId": "dev-1"}, headers=safety_lead.headers
    ).json()["items"]
    assert {i["action"] for i in by_subject} == {"lock.placed", "lock.removed"}
    by_actor = client.get(
        "/api/audit", params={"actorId": str(safety_lead.user_id)}, headers=safety_lead.headers
    ).json()["items"]
    assert by_actor == []  # the fixture created sam from no one's account
    window = client.get(
        "/api/audit",
        params={
            "action": "lock.placed",
            "since": (T0 + timedelta(seconds=2)).isoformat(),
            "until": (T0 + timedelta(seconds=4)).isoformat(),
        },
        headers=safety_lead.headers,
    ).json()["items"]
    assert [i["subjectId"] for i in window] == ["dev-3", "dev-2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "2026-03-01T09:00:00"}, "since"),
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"action": "DROP TABLE"}, "action"),
        ({"actorId": "nope"}, "actorId"),
        ({"limit": 0}, "limit"),
        ({"subjectId": "a\x00b"}, "subjectId"),
        ({"cursor": "AAAAAAAAAAA"}, "cursor"),
    ],
)
def test_bad_audit_queries_name_the_field(
    client: TestClient, admin: Person, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/audit", params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_the_verify_api_reports_intact_and_then_the_tampered_entry(
    client: TestClient, database: Database, database_url: str, safety_lead: Person
) -> None:
    _append(database, 5)
    ok = client.get("/api/audit/verify", headers=safety_lead.headers).json()
    assert ok["intact"] is True and ok["entries"] == 7 and ok["breaks"] == []
    assert ok["headSeq"] == 7 and len(ok["head"]) == 64
    _tamper(
        database_url,
        "UPDATE audit_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE seq = 4",
    )
    broken = client.get(
        "/api/audit/verify",
        params={"anchor": f"{ok['headSeq']}:{ok['head']}"},
        headers=safety_lead.headers,
    ).json()
    assert broken["intact"] is False
    assert broken["breaks"] == [
        {
            "seq": 4,
            "kind": BreakKind.EDITED.value,
            "problem": "entry 4: its content does not match its hash (edited)",
        }
    ]
    bad = client.get("/api/audit/verify", params={"anchor": "7:zz"}, headers=safety_lead.headers)
    assert bad.status_code == 422
    assert bad.json()["field"] == "anchor.0"
