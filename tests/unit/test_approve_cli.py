"""``kittylab approve`` / ``kittylab deny`` against a tiny local HTTP server that plays the
approval endpoints: it rebuilds the payload from its own copy of the event and checks the
signature with ``verify``, so these tests prove client and verifier agree."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from kittylab.cli.main import app
from kittylab.domain.errors import SignatureRejected
from kittylab.safety.approval_payload import (
    NONCE_PATTERN,
    ApprovalPayload,
    arguments_digest,
    mismatch,
)
from kittylab.safety.signatures import PublicKey, parse_public_key, verify

TOKEN = "kl_test-token-for-the-fake-server"


@dataclass
class FakeLab:
    """The server side of one safety event, needing ``approvals_needed`` approvals."""

    approver_key: PublicKey
    approvals_needed: int = 1
    status: str = "pending"
    event_id: UUID = field(default_factory=uuid4)
    device_id: UUID = field(default_factory=uuid4)
    initiator_id: UUID = field(default_factory=uuid4)
    command_id: UUID = field(default_factory=uuid4)
    arguments: dict[str, Any] = field(default_factory=lambda: {"hold_open_seconds": 30})
    served_id: UUID | None = None
    """Answer this id for the event instead of its own (a lying server or proxy)."""
    served_digest: str | None = None
    expires_at: datetime = field(
        default_factory=lambda: (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    )
    approvals: list[dict[str, Any]] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def event(self) -> dict[str, Any]:
        missing = self.approvals_needed - len(self.approvals)
        return {
            "id": str(self.served_id or self.event_id),
            "intent": "unlock_door",
            "deviceId": str(self.device_id),
            "deviceExternalId": "cnc-door",
            "deviceName": "CNC door",
            "zoneId": None,
            "zoneName": None,
            "initiatedBy": str(self.initiator_id),
            "initiatorName": "Olivia Operator",
            "commandId": str(self.command_id),
            "payload": self.arguments,
            "payloadDigest": self.served_digest or arguments_digest(self.arguments),
            "expiresAt": self.expires_at.isoformat(),
            "status": self.status,
            "missing": [f"{missing} more approval(s) from safety"] if missing > 0 else [],
        }

    def approve(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonce = str(body["nonce"])
        if not NONCE_PATTERN.match(nonce):
            return 422, {"detail": "bad nonce", "field": "nonce"}
        expected = ApprovalPayload(
            event_id=self.event_id,
            intent="unlock_door",
            device_id=self.device_id,
            zone_id=None,
            initiator_id=self.initiator_id,
            command_id=self.command_id,
            arguments_digest=arguments_digest(self.arguments),
            nonce=nonce,
            expires_at=self.expires_at,
        )
        if reason := mismatch(expected, str(body["signedPayload"]).encode()):
            return 422, {"detail": reason, "field": "signedPayload"}
        try:
            verify(self.approver_key, expected.canonical(), str(body["signature"]))
        except SignatureRejected as exc:
            return 422, {"detail": exc.reason, "field": "signature"}
        self.approvals.append(body)
        if len(self.approvals) >= self.approvals_needed:
            self.status = "approved"
        return 200, self.event()


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(lab: FakeLab) -> FakeLab:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                lab.requests.append(f"GET {self.path}")
                if self.headers["authorization"] != f"Bearer {TOKEN}":
                    self._answer(401, {"detail": "no token"})
                elif self.path == f"/api/safety/events/{lab.event_id}":
                    self._answer(200, lab.event())
                else:
                    self._answer(404, {"detail": "no such event"})

            def do_POST(self) -> None:
                lab.requests.append(f"POST {self.path}")
                length = int(self.headers["content-length"])
                body = json.loads(self.rfile.read(length))
                base = f"/api/safety/events/{lab.event_id}"
                if self.path == f"{base}/approve":
                    self._answer(*lab.approve(body))
                elif self.path == f"{base}/deny":
                    lab.denials.append(body["reason"])
                    lab.status = "denied"
                    self._answer(200, lab.event())
                else:
                    self._answer(404, {"detail": "no such event"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        monkeypatch.setenv("KITTYLAB_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("KITTYLAB_TOKEN", TOKEN)
        return lab

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ssh_key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def public(path: Path) -> PublicKey:
    return parse_public_key(path.with_suffix(".pub").read_text())


def run(*args: str, answer: str | None = "y\n") -> Any:
    """The CLI as a person at a terminal who answers ``answer`` when asked."""
    return CliRunner().invoke(app, list(args), input=answer)


def test_approve_signs_with_an_ssh_key_and_the_server_verifies_it(
    serve: Any, tmp_path: Path
) -> None:
    key = ssh_key(tmp_path, "sam")
    lab = serve(FakeLab(public(key)))
    result = run("approve", str(lab.event_id), "--key", str(key), "--ppe", "goggles")
    assert result.exit_code == 0, result.output
    assert "approved — the command is dispatched" in result.stdout
    [approval] = lab.approvals
    assert approval["ppe"] == ["goggles"]
    assert approval["signature"].startswith("-----BEGIN SSH SIGNATURE-----")
    assert json.loads(approval["signedPayload"])["nonce"] == approval["nonce"]


def test_a_first_of_two_approvals_reports_what_is_still_missing(serve: Any, tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_file = tmp_path / "approver.key"
    key_file.write_text("ed25519-private:" + base64.b64encode(seed).decode())
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    lab = serve(FakeLab(parse_public_key("ed25519:" + base64.b64encode(raw_public).decode()), 2))
    result = run("approve", str(lab.event_id), "--key", str(key_file))
    assert result.exit_code == 0, result.output
    assert "your approval is recorded; still missing: 1 more approval(s) from safety" in (
        result.stdout
    )


def test_a_signature_by_the_wrong_key_is_refused_with_the_servers_reason(
    serve: Any, tmp_path: Path
) -> None:
    registered, other = ssh_key(tmp_path, "sam"), ssh_key(tmp_path, "eve")
    lab = serve(FakeLab(public(registered)))
    result = run("approve", str(lab.event_id), "--key", str(other))
    assert result.exit_code == 1
    assert f"signed with key {public(other).fingerprint}" in result.output
    assert "[HTTP 422]" in result.output
    assert lab.approvals == []


def test_an_event_that_is_not_pending_is_refused_before_signing(serve: Any, tmp_path: Path) -> None:
    key = ssh_key(tmp_path, "sam")
    lab = serve(FakeLab(public(key), status="denied"))
    result = run("approve", str(lab.event_id), "--key", str(key))
    assert result.exit_code == 1
    assert "is denied, not pending: nothing to approve" in result.output
    assert lab.requests == [f"GET /api/safety/events/{lab.event_id}"]


def test_a_bad_event_id_or_missing_key_file_is_a_clear_error(serve: Any, tmp_path: Path) -> None:
    key = ssh_key(tmp_path, "sam")
    lab = serve(FakeLab(public(key)))
    bad_id = run("approve", "nope", "--key", str(key))
    assert bad_id.exit_code == 1
    assert "'nope' is not an event id" in bad_id.output
    missing = run("approve", str(lab.event_id), "--key", str(tmp_path / "absent"))
    assert missing.exit_code == 1
    assert "cannot read the key file" in missing.output


def test_deny_sends_the_reason(serve: Any, tmp_path: Path) -> None:
    lab = serve(FakeLab(public(ssh_key(tmp_path, "sam"))))
    result = run("deny", str(lab.event_id), "--reason", "nobody is in the room")
    assert result.exit_code == 0, result.output
    assert lab.denials == ["nobody is in the room"]
    blank = run("deny", str(lab.event_id), "--reason", "  ")
    assert blank.exit_code == 1
    assert "--reason: is required" in blank.output


def raw_key(tmp_path: Path) -> tuple[Path, PublicKey]:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_file = tmp_path / "approver.key"
    key_file.write_text("ed25519-private:" + base64.b64encode(seed).decode())
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return key_file, parse_public_key("ed25519:" + base64.b64encode(raw_public).decode())


def test_approve_shows_what_it_signs_and_signs_nothing_when_the_answer_is_no(
    serve: Any, tmp_path: Path
) -> None:
    key, public_key = raw_key(tmp_path)
    lab = serve(FakeLab(public_key, arguments={"hold_open_seconds": 30}))
    result = run("approve", str(lab.event_id), "--key", str(key), answer="n\n")
    assert result.exit_code == 1, result.output
    for shown in (
        str(lab.event_id),
        "unlock_door",
        "cnc-door",
        "CNC door",
        "Olivia Operator",
        "hold_open_seconds: 30",
        arguments_digest(lab.arguments),
        "Sign this approval?",
    ):
        assert shown in result.output
    assert "nothing was signed" in result.output
    assert lab.approvals == []
    assert [r for r in lab.requests if r.startswith("POST")] == []


def test_approve_without_an_answer_signs_nothing_and_yes_skips_the_question(
    serve: Any, tmp_path: Path
) -> None:
    key, public_key = raw_key(tmp_path)
    lab = serve(FakeLab(public_key))
    unanswered = run("approve", str(lab.event_id), "--key", str(key), answer=None)
    assert unanswered.exit_code != 0
    assert lab.approvals == []
    scripted = run("approve", str(lab.event_id), "--key", str(key), "--yes", answer=None)
    assert scripted.exit_code == 0, scripted.output
    assert "Sign this approval?" not in scripted.output
    assert "hold_open_seconds: 30" in scripted.output  # shown all the same
    [approval] = lab.approvals
    signed = json.loads(approval["signedPayload"])
    assert signed["v"] == 2
    assert signed["command"] == str(lab.command_id)
    assert signed["args"] == arguments_digest({"hold_open_seconds": 30})


def test_approve_refuses_an_event_other_than_the_one_asked_for(serve: Any, tmp_path: Path) -> None:
    key, public_key = raw_key(tmp_path)
    other = uuid4()
    lab = serve(FakeLab(public_key, served_id=other))
    result = run("approve", str(lab.event_id), "--key", str(key), "--yes")
    assert result.exit_code == 1
    assert f"answered event {other} when asked for {lab.event_id}" in result.output
    assert lab.approvals == []


def test_approve_refuses_an_intent_or_device_other_than_the_pinned_one(
    serve: Any, tmp_path: Path
) -> None:
    key, public_key = raw_key(tmp_path)
    lab = serve(FakeLab(public_key))
    event = str(lab.event_id)
    intent = run("approve", event, "--key", str(key), "--yes", "--intent", "printer_heat")
    assert intent.exit_code == 1
    assert "is unlock_door, not printer_heat" in intent.output
    device = run("approve", event, "--key", str(key), "--yes", "--device", "prusa-mk4")
    assert device.exit_code == 1
    assert "is for device cnc-door" in device.output
    assert lab.approvals == []
    pinned = run(
        "approve",
        event,
        "--key",
        str(key),
        "--yes",
        "--intent",
        "unlock_door",
        "--device",
        str(lab.device_id),
    )
    assert pinned.exit_code == 0, pinned.output
    assert len(lab.approvals) == 1


def test_approve_computes_the_digest_itself_and_refuses_one_that_does_not_match(
    serve: Any, tmp_path: Path
) -> None:
    key, public_key = raw_key(tmp_path)
    lab = serve(FakeLab(public_key, served_digest=arguments_digest({"hold_open_seconds": 5})))
    result = run("approve", str(lab.event_id), "--key", str(key), "--yes")
    assert result.exit_code == 1
    assert "do not match the server's digest" in result.output
    assert lab.approvals == []
