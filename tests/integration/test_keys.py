"""Approver keys on PostgreSQL: the API, the service the approval workflow uses, and
``kittylab keys``. Every change lands in the audit log."""

from __future__ import annotations

import base64
import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, UserKey
from kittylab.api.app import create_app
from kittylab.cli import keys as keys_cli
from kittylab.cli.client import ApiClient
from kittylab.cli.main import app
from kittylab.domain.errors import SignatureRejected
from kittylab.people import identity
from kittylab.records import audit
from kittylab.safety import keys
from kittylab.safety.enrolment import enrolment_message
from kittylab.safety.signatures import parse_public_key
from tests.integration.conftest import Person

MESSAGE = b'{"event":"e1","nonce":"abcdefghijklmnop"}'
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def ssh_key(tmp_path: Path, name: str, kind: str = "ed25519") -> Path:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@lab", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def pub(path: Path) -> str:
    return path.with_suffix(".pub").read_text().strip()


def ssh_sign(key: Path, message: bytes, namespace: str = "kittylab") -> str:
    return subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key)],
        input=message,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()


def add(
    client: TestClient, who: Person, user: UUID, name: str, key: Path, text: str | None = None
) -> dict[str, object]:
    """``who`` enrols the key ``key`` (a private key file; ``text``: its public key as
    sent, ``key.pub`` by default) for ``user``, signing the server's challenge with it."""
    public = pub(key) if text is None else text
    got = client.post(f"/api/users/{user}/keys/challenge", headers=who.headers)
    if got.status_code != 201:
        refused: dict[str, object] = got.json()
        refused["_status"] = got.status_code
        return refused
    issued = got.json()
    message = enrolment_message(
        challenge_id=UUID(issued["challengeId"]),
        challenge=issued["challenge"],
        user_id=user,
        public_key=public,
        expires_at=datetime.fromisoformat(issued["expiresAt"]),
    )
    response = client.post(
        f"/api/users/{user}/keys",
        json={
            "name": name,
            "publicKey": public,
            "challengeId": issued["challengeId"],
            "signature": ssh_sign(key, message, issued["sshNamespace"]),
        },
        headers=who.headers,
    )
    body: dict[str, object] = response.json()
    body["_status"] = response.status_code
    return body


def audit_entries(database: Database, action: str) -> list[AuditEntry]:
    with database.unit_of_work() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()
        session.expunge_all()
        return list(rows)


# --- API ---------------------------------------------------------------------------------


def test_an_approver_enrols_their_own_key_and_it_is_audited(
    client: TestClient, safety_lead: Person, database: Database, tmp_path: Path
) -> None:
    key = ssh_key(tmp_path, "sam")
    answer = add(client, safety_lead, safety_lead.user_id, "laptop", key, pub(key) + "\n")
    assert answer["_status"] == 201, answer
    fingerprint = parse_public_key(pub(key)).fingerprint
    assert answer["fingerprint"] == fingerprint
    assert answer["kind"] == "ed25519"
    assert answer["publicKey"] == pub(key)
    assert answer["revokedAt"] is None
    assert answer["awaitingConfirmation"] is True
    [entry] = audit_entries(database, "key.enrolled")
    assert entry.actor_id == safety_lead.user_id
    assert entry.subject_id == answer["id"]
    assert entry.details["fingerprint"] == fingerprint
    assert entry.details["userId"] == str(safety_lead.user_id)
    assert entry.details["proof"] == "signed challenge"
    with database.unit_of_work() as session:
        assert audit.verify_chain(session).intact


def test_keys_are_enrolled_by_their_owner_only_not_even_by_an_admin(
    client: TestClient, operator: Person, admin: Person, safety_lead: Person, tmp_path: Path
) -> None:
    # A bearer token of someone else must not be enough to give a person a key.
    key = ssh_key(tmp_path, "sam")
    refused = add(client, operator, safety_lead.user_id, "laptop", key)
    assert refused["_status"] == 403
    assert add(client, admin, safety_lead.user_id, "laptop", key)["_status"] == 403
    assert add(client, safety_lead, safety_lead.user_id, "laptop", key)["_status"] == 201


def test_an_ssh_proof_made_for_approvals_does_not_enrol_a_key(
    client: TestClient, safety_lead: Person, tmp_path: Path
) -> None:
    key = ssh_key(tmp_path, "sam")
    issued = client.post(
        f"/api/users/{safety_lead.user_id}/keys/challenge", headers=safety_lead.headers
    ).json()
    message = enrolment_message(
        challenge_id=UUID(issued["challengeId"]),
        challenge=issued["challenge"],
        user_id=safety_lead.user_id,
        public_key=pub(key),
        expires_at=datetime.fromisoformat(issued["expiresAt"]),
    )
    response = client.post(
        f"/api/users/{safety_lead.user_id}/keys",
        json={
            "name": "laptop",
            "publicKey": pub(key),
            "challengeId": issued["challengeId"],
            "signature": ssh_sign(key, message, "kittylab"),
        },
        headers=safety_lead.headers,
    )
    assert response.status_code == 403
    assert "namespace 'kittylab'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "x", "publicKey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB me"}, "publicKey", "RSA"),
        ({"name": "x", "publicKey": "ssh-ed25519 AAAA*"}, "publicKey", "base64"),
        ({"name": "x", "publicKey": ""}, "publicKey", ""),
        ({"name": "   ", "publicKey": "ed25519:" + "A" * 43 + "="}, "name", "required"),
        ({"publicKey": "ed25519:" + "A" * 43 + "="}, "name", ""),
        ({"name": "x", "publicKey": "ed25519:" + "A" * 43 + "=", "extra": 1}, "extra", ""),
    ],
)
def test_bad_keys_get_a_problem_naming_the_field(
    client: TestClient,
    safety_lead: Person,
    admin: Person,
    body: dict[str, object],
    field: str,
    words: str,
) -> None:
    proof = {"challengeId": str(uuid4()), "signature": "x"}
    response = client.post(
        f"/api/users/{safety_lead.user_id}/keys",
        json={**proof, **body},
        headers=safety_lead.headers,
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field
    assert words in problem["detail"]


def test_the_same_key_cannot_be_registered_twice_or_by_two_people(
    client: TestClient, safety_lead: Person, admin: Person, tmp_path: Path
) -> None:
    key = ssh_key(tmp_path, "sam")
    assert add(client, safety_lead, safety_lead.user_id, "laptop", key)["_status"] == 201
    again = add(client, safety_lead, safety_lead.user_id, "other", key, pub(key) + " new-comment")
    assert again["_status"] == 409
    assert again["field"] == "publicKey"
    assert "already has this key" in str(again["detail"])
    # Even holding the private key, a second person cannot enrol it.
    theirs = add(client, admin, admin.user_id, "stolen", key)
    assert theirs["_status"] == 409
    assert "another person" in str(theirs["detail"])
    other = ssh_key(tmp_path, "sam2")
    same_name = add(client, safety_lead, safety_lead.user_id, "laptop", other)
    assert same_name["_status"] == 409
    assert same_name["field"] == "name"


def test_keys_are_listed_for_self_safety_and_admin_only(
    client: TestClient,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    tmp_path: Path,
) -> None:
    add(client, operator, operator.user_id, "laptop", ssh_key(tmp_path, "olivia"))
    path = f"/api/users/{operator.user_id}/keys"
    for who in (operator, safety_lead, admin):
        listed = client.get(path, headers=who.headers)
        assert listed.status_code == 200
        assert [k["name"] for k in listed.json()["items"]] == ["laptop"]
    assert client.get(f"/api/users/{admin.user_id}/keys", headers=operator.headers).status_code == (
        403
    )
    assert client.get(f"/api/users/{uuid4()}/keys", headers=admin.headers).status_code == 404


def test_a_revoked_key_stays_revoked_and_the_revocation_is_audited(
    client: TestClient,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    database: Database,
    tmp_path: Path,
) -> None:
    private = ssh_key(tmp_path, "sam")
    key = pub(private)
    key_id = add(client, safety_lead, safety_lead.user_id, "laptop", private)["id"]
    stranger = client.post(f"/api/keys/{key_id}/revoke", headers=operator.headers)
    assert stranger.status_code == 403
    revoked = client.post(f"/api/keys/{key_id}/revoke", headers=safety_lead.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revokedAt"] is not None
    twice = client.post(f"/api/keys/{key_id}/revoke", headers=safety_lead.headers)
    assert twice.status_code == 409
    assert "already revoked" in twice.json()["detail"]
    readded = add(client, safety_lead, safety_lead.user_id, "laptop", private)
    assert readded["_status"] == 409
    assert "stays revoked" in str(readded["detail"])
    assert client.post(f"/api/keys/{uuid4()}/revoke", headers=safety_lead.headers).status_code == (
        404
    )
    [entry] = audit_entries(database, "key.revoked")
    assert entry.actor_id == safety_lead.user_id
    assert entry.details["fingerprint"] == parse_public_key(key).fingerprint


# --- what the approval workflow calls ----------------------------------------------------


@pytest.fixture
def keyring(
    database: Database, safety_lead: Person, admin: Person, tmp_path: Path
) -> dict[str, object]:
    """Sam's SSH key and raw Ed25519 key, a revoked key of Sam's, and Ada's key."""
    sam_ssh, old, ada = ssh_key(tmp_path, "sam"), ssh_key(tmp_path, "old"), ssh_key(tmp_path, "ada")
    new = ssh_key(tmp_path, "new")
    raw = Ed25519PrivateKey.generate()
    raw_public = raw.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    with database.unit_of_work() as s:
        common = {"actor_id": None, "now": T0}
        keys.add_key(s, user_id=safety_lead.user_id, name="ssh", public_key=pub(sam_ssh), **common)
        keys.add_key(
            s,
            user_id=safety_lead.user_id,
            name="raw",
            public_key="ed25519:" + base64.b64encode(raw_public).decode(),
            **common,
        )
        old_row = keys.add_key(
            s, user_id=safety_lead.user_id, name="old", public_key=pub(old), **common
        )
        keys.revoke_key(s, old_row.id, actor_id=None, now=T0)
        keys.add_key(s, user_id=admin.user_id, name="ada", public_key=pub(ada), **common)
        keys.add_key(
            s,
            user_id=safety_lead.user_id,
            name="new",
            public_key=pub(new),
            awaiting_confirmation=True,
            **common,
        )
    return {"ssh": sam_ssh, "old": old, "ada": ada, "raw": raw, "new": new}


def reason_for(database: Database, user: UUID, signature: str) -> str:
    with database.unit_of_work() as s, pytest.raises(SignatureRejected) as caught:
        keys.verify_approval_signature(s, user, MESSAGE, signature)
    return caught.value.reason


def test_an_approval_signature_is_matched_to_the_approvers_active_key(
    database: Database, safety_lead: Person, keyring: dict[str, object]
) -> None:
    ssh, raw = keyring["ssh"], keyring["raw"]
    assert isinstance(ssh, Path) and isinstance(raw, Ed25519PrivateKey)
    with database.unit_of_work() as s:
        found = keys.verify_approval_signature(
            s, safety_lead.user_id, MESSAGE, ssh_sign(ssh, MESSAGE)
        )
        assert found.name == "ssh"
        raw_signature = base64.b64encode(raw.sign(MESSAGE)).decode()
        assert keys.verify_approval_signature(
            s, safety_lead.user_id, MESSAGE, raw_signature
        ).name == ("raw")


def test_revoked_unknown_and_other_peoples_keys_are_refused_precisely(
    database: Database,
    safety_lead: Person,
    keyring: dict[str, object],
    tmp_path: Path,
) -> None:
    old, ada = keyring["old"], keyring["ada"]
    assert isinstance(old, Path) and isinstance(ada, Path)
    revoked = reason_for(database, safety_lead.user_id, ssh_sign(old, MESSAGE))
    assert revoked == (
        f"key {parse_public_key(pub(old)).fingerprint} was revoked on {T0.isoformat()}"
    )
    theirs = reason_for(database, safety_lead.user_id, ssh_sign(ada, MESSAGE))
    assert theirs.endswith("belongs to another person, not this approver")
    stranger = ssh_key(tmp_path, "stranger")
    assert reason_for(database, safety_lead.user_id, ssh_sign(stranger, MESSAGE)).endswith(
        "is not registered to anyone"
    )
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(MESSAGE)).decode()
    assert "does not verify" in reason_for(database, safety_lead.user_id, forged)
    with database.unit_of_work() as s, pytest.raises(SignatureRejected, match="not registered"):
        keys.active_key_for(s, safety_lead.user_id, uuid4())
    new = keyring["new"]
    assert isinstance(new, Path)
    unconfirmed = reason_for(database, safety_lead.user_id, ssh_sign(new, MESSAGE))
    assert unconfirmed.endswith(
        "awaits confirmation by a second person with the safety role (kittylab keys confirm)"
    )


def test_an_approver_without_keys_is_told_so(database: Database, operator: Person) -> None:
    raw = base64.b64encode(Ed25519PrivateKey.generate().sign(MESSAGE)).decode()
    assert "no registered key" in reason_for(database, operator.user_id, raw)


# --- kittylab keys -----------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KITTYLAB_LOG_JSON", "false")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_kittylab_keys_adds_lists_and_revokes_on_the_database(
    cli_env: None, database: Database, safety_lead: Person, tmp_path: Path
) -> None:
    key = ssh_key(tmp_path, "sam", "ecdsa")
    runner = CliRunner()
    added = runner.invoke(
        app, ["keys", "add", "sam", "-", "--name", "yubikey"], input=pub(key) + "\n"
    )
    assert added.exit_code == 0, added.output
    fingerprint = parse_public_key(pub(key)).fingerprint
    assert fingerprint in added.stdout
    with database.unit_of_work() as s:
        row = s.scalars(select(UserKey)).one()
        key_id, owner = row.id, row.user_id
    assert owner == safety_lead.user_id

    listed = runner.invoke(app, ["keys", "list", "sam"])
    assert listed.exit_code == 0, listed.output
    assert "yubikey" in listed.stdout and "ecdsa-p256" in listed.stdout
    assert "active" in listed.stdout

    revoked = runner.invoke(app, ["keys", "revoke", str(key_id)])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(app, ["keys", "revoke", str(key_id)])
    assert again.exit_code == 1
    assert "already revoked" in again.output
    assert "revoked" in runner.invoke(app, ["keys", "list"]).stdout

    [added_entry] = audit_entries(database, "key.added")
    [revoked_entry] = audit_entries(database, "key.revoked")
    assert added_entry.actor_id is None and added_entry.details["via"] == "cli"
    # The operator on the host needs no second person, and it says so in the log.
    assert added_entry.details["awaitingConfirmation"] is False
    assert revoked_entry.details["fingerprint"] == fingerprint


def test_kittylab_keys_refuses_rsa_and_unknown_people_with_exit_1(
    cli_env: None, database: Database, safety_lead: Person, tmp_path: Path
) -> None:
    rsa = ssh_key(tmp_path, "old", "rsa")
    runner = CliRunner()
    refused = runner.invoke(
        app, ["keys", "add", "sam", str(rsa.with_suffix(".pub")), "--name", "old"]
    )
    assert refused.exit_code == 1
    assert "publicKey: RSA keys are not accepted" in refused.output
    nobody = runner.invoke(
        app, ["keys", "add", "nobody", str(rsa.with_suffix(".pub")), "--name", "x"]
    )
    assert nobody.exit_code == 1
    assert "no user with id nobody" in nobody.output
    bad_id = runner.invoke(app, ["keys", "revoke", "not-a-uuid"])
    assert bad_id.exit_code == 1
    assert "is not a key id" in bad_id.output


def test_kittylab_keys_enrol_signs_the_challenge_and_confirm_needs_a_second_person(
    cli_env: None,
    container: bootstrap.Container,
    database: Database,
    safety_lead: Person,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with database.unit_of_work() as s:
        sasha = identity.create_user(s, username="sasha", display_name="Sasha", roles=["safety"])
        second = Person(sasha.id, identity.issue_token(s, sasha).token)
    web = create_app(container)

    def run_as(person: Person, *args: str) -> tuple[int, str]:
        monkeypatch.setattr(
            keys_cli,
            "connect",
            lambda url: ApiClient(
                "http://testserver", person.token, http=TestClient(web, client=("127.0.0.1", 50000))
            ),
        )
        result = CliRunner().invoke(app, ["keys", *args])
        return result.exit_code, result.output

    ssh = ssh_key(tmp_path, "yubi")
    seed = Ed25519PrivateKey.generate()
    raw_file = tmp_path / "raw.key"
    raw_file.write_text(
        "ed25519-private:"
        + base64.b64encode(
            seed.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        ).decode()
    )
    code, output = run_as(safety_lead, "enrol", "--key", str(ssh), "--name", "yubikey")
    assert code == 0, output
    assert parse_public_key(pub(ssh)).fingerprint in output
    code, output = run_as(safety_lead, "enrol", "--key", str(raw_file), "--name", "laptop")
    assert code == 0, output
    with database.unit_of_work() as s:
        rows = {row.name: row for row in s.scalars(select(UserKey))}
        assert all(row.awaiting_confirmation for row in rows.values())
        key_id = rows["yubikey"].id

    code, output = run_as(safety_lead, "confirm", str(key_id))
    assert code == 1
    assert "not its owner" in output
    code, output = run_as(second, "confirm", str(key_id))
    assert code == 0, output
    assert "it signs now" in output
    with database.unit_of_work() as s:
        confirmed = s.get(UserKey, key_id)
        assert confirmed is not None and not confirmed.awaiting_confirmation
        assert confirmed.confirmed_by == sasha.id
