"""Approvers see what they sign (issue 13): ``kittylab approve`` against a real server,
through a local HTTP proxy that lies.

Before the fix, a proxy that answered event B when asked for event A turned an approval
of a ``printer_heat`` into an approval of the CNC door's ``door_unlock``, and a proxy
that changed the arguments went unnoticed, since the signature did not cover them.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab.adapters.db.tables import AccessPolicy, Zone
from kittylab.api.app import create_app
from kittylab.cli.main import app as cli
from kittylab.domain.enums import Role
from kittylab.safety.approval_payload import ApprovalPayload, arguments_digest
from tests.integration.api_server import served
from tests.integration.test_safety_workflow import Lab
from tests.integration.test_safety_workflow import lab as safety_lab  # noqa: F401

HEAT = {"nozzle": 210, "bed": 60}

Rewrite = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture
def lab(safety_lab: Lab) -> Lab:  # noqa: F811 - the imported fixture, renamed
    """The safety workflow tests' demo lab (people with tokens and approval keys)."""
    return safety_lab


@pytest.fixture
def held(lab: Lab) -> tuple[str, str]:
    """Two pending events asked for by Olivia: A, heating the Prusa (held by a print-farm
    policy added here), and B, unlocking the CNC door."""
    with lab.database.unit_of_work() as s:
        farm = s.scalars(select(Zone.id).where(Zone.name == "print-farm")).one()
        s.add(
            AccessPolicy(
                name="print-farm-heat",
                zone_id=farm,
                intents=["printer_heat"],
                required_roles=[Role.SAFETY],
                requires_dual_confirm=False,
                requires_presence=False,
                pqe_checks={},
            )
        )
    heat = lab.client.post(
        f"/api/device/{lab.devices['prusa-mk4']}/command",
        json={"intent": "printer_heat", "payload": HEAT},
        headers=lab.people["olivia"].headers,
    )
    assert heat.status_code == 202, heat.text
    unlock = lab.request("olivia", "cnc-door", "door_unlock")
    assert unlock["_status"] == 202, unlock
    return heat.json()["pendingHazard"]["eventId"], unlock["pendingHazard"]["eventId"]


@contextmanager
def proxy(
    upstream: str,
    *,
    path: Callable[[str], str] = lambda p: p,
    answer: Rewrite = lambda _, body: body,
) -> Iterator[tuple[str, list[str]]]:
    """A proxy in front of ``upstream`` that may send requests to another ``path`` and
    rewrite the JSON it answers; yields its URL and the requests it forwarded."""
    forwarded: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            target = path(self.path)
            forwarded.append(f"{method} {target}")
            response = httpx.request(
                method,
                upstream + target,
                content=body,
                headers={
                    "authorization": self.headers["authorization"] or "",
                    "content-type": "application/json",
                },
                timeout=10,
            )
            data = response.content
            if response.headers.get("content-type", "").startswith("application/json"):
                data = json.dumps(answer(method, response.json())).encode()
            self.send_response(response.status_code)
            self.send_header("content-type", response.headers.get("content-type", ""))
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", forwarded
    finally:
        server.shutdown()
        server.server_close()


def key_file(lab: Lab, who: str, tmp_path: Path) -> Path:
    seed = lab.people[who].key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    path = tmp_path / f"{who}.key"
    path.write_text("ed25519-private:" + base64.b64encode(seed).decode())
    return path


def approve(url: str, token: str, event_id: str, key: Path, *extra: str) -> Any:
    """``kittylab approve`` as a person at a terminal who answers "y" when asked."""
    return CliRunner().invoke(
        cli,
        ["approve", event_id, "--key", str(key), "--url", url, *extra],
        env={"KITTYLAB_TOKEN": token},
        input="y\n",
    )


def status(lab: Lab, event_id: str) -> str:
    return str(lab.event(event_id)["status"])


def test_a_proxy_answering_another_event_gets_no_signature(
    lab: Lab,
    held: tuple[str, str],
    tmp_path: Path,
) -> None:
    heat, unlock = held
    with (
        served(create_app(lab.container)) as port,
        proxy(f"http://127.0.0.1:{port}", path=lambda p: p.replace(heat, unlock)) as (
            url,
            forwarded,
        ),
    ):
        result = approve(url, lab.people["sam"].token, heat, key_file(lab, "sam", tmp_path))
    assert result.exit_code == 1, result.output
    assert f"answered event {unlock}" in result.output
    assert [f for f in forwarded if f.startswith("POST")] == []
    assert (status(lab, heat), status(lab, unlock)) == ("pending", "pending")


def test_a_proxy_that_changes_the_arguments_gets_no_signature(
    lab: Lab,
    held: tuple[str, str],
    tmp_path: Path,
) -> None:
    heat, _ = held

    def hotter(method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "GET" and isinstance(body.get("payload"), dict):
            body["payload"] = {**body["payload"], "nozzle": 280}
        return body

    with (
        served(create_app(lab.container)) as port,
        proxy(f"http://127.0.0.1:{port}", answer=hotter) as (url, forwarded),
    ):
        result = approve(url, lab.people["sam"].token, heat, key_file(lab, "sam", tmp_path))
    assert result.exit_code == 1, result.output
    assert "do not match the server's digest" in result.output
    assert [f for f in forwarded if f.startswith("POST")] == []
    assert status(lab, heat) == "pending"


def test_an_approval_signed_over_changed_arguments_is_refused_by_the_server(
    lab: Lab,
    held: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A proxy that keeps its lie consistent (digest recomputed) gets the approver's
    signature over the wrong arguments; the server, which computes the digest from the
    held command itself, refuses it."""
    heat, _ = held

    def consistent(method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "GET" and isinstance(body.get("payload"), dict):
            body["payload"] = {**body["payload"], "nozzle": 280}
            body["payloadDigest"] = arguments_digest(body["payload"])
        return body

    with (
        served(create_app(lab.container)) as port,
        proxy(f"http://127.0.0.1:{port}", answer=consistent) as (url, _),
    ):
        result = approve(url, lab.people["sam"].token, heat, key_file(lab, "sam", tmp_path))
    assert result.exit_code == 1, result.output
    assert "nozzle: 280" in result.output  # what the approver was shown, and signed
    assert "'args' does not match" in result.output
    assert status(lab, heat) == "pending"

    # The same forgery sent straight to the server.
    event = lab.event(heat)
    nonce = secrets.token_urlsafe(24)
    forged = ApprovalPayload(
        event_id=UUID(event["id"]),
        intent=event["intent"],
        device_id=UUID(event["deviceId"]),
        zone_id=UUID(event["zoneId"]),
        initiator_id=UUID(event["initiatedBy"]),
        command_id=UUID(event["commandId"]),
        arguments_digest=arguments_digest({**HEAT, "nozzle": 280}),
        nonce=nonce,
        expires_at=datetime.fromisoformat(event["expiresAt"]),
    ).canonical()
    signature = base64.b64encode(lab.people["sam"].key.sign(forged)).decode()
    code, body = lab.approve(
        "sam", heat, {"nonce": nonce, "signature": signature, "signedPayload": forged.decode()}
    )
    assert code == 403, body
    assert "'args' does not match" in body["detail"]
    # Without the signed text, the signature alone does not verify over the real payload.
    code, body = lab.approve(
        "sam", heat, {"nonce": secrets.token_urlsafe(24), "signature": signature}
    )
    assert code == 403, body
    assert "does not verify" in body["detail"]
    assert status(lab, heat) == "pending"


def test_through_an_honest_path_the_approver_sees_the_arguments_and_the_approval_counts(
    lab: Lab,
    held: tuple[str, str],
    tmp_path: Path,
) -> None:
    heat, _ = held
    event = lab.event(heat)
    assert event["payload"] == HEAT
    assert event["payloadDigest"] == arguments_digest(HEAT)
    assert (event["deviceExternalId"], event["zoneName"]) == ("prusa-mk4", "print-farm")
    assert event["initiatorName"] == "Olivia Operator"
    with served(create_app(lab.container)) as port, proxy(f"http://127.0.0.1:{port}") as (url, _):
        result = approve(
            url,
            lab.people["sam"].token,
            heat,
            key_file(lab, "sam", tmp_path),
            "--intent",
            "printer_heat",
            "--device",
            "prusa-mk4",
        )
    assert result.exit_code == 0, result.output
    for shown in ("printer_heat", "prusa-mk4", "print-farm", "Olivia Operator", "nozzle: 210"):
        assert shown in result.output
    assert "bed: 60" in result.output
    assert "approved" in result.output
    assert status(lab, heat) == "approved"
