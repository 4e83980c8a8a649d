"""``kittylab approve`` and ``kittylab deny``: decide a pending safety event from a
terminal, through the running server's API (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``).

``approve`` fetches the event, builds the exact payload the server will check
(``ApprovalPayload``, with a fresh nonce), signs it with the approver's private key on this
machine (``kittylab.cli.signing``) and sends the signature. The private key never leaves
the machine; the server verifies the signature against the approver's registered key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from kittylab.cli.client import ApiClient
from kittylab.cli.options import UrlOption
from kittylab.cli.signing import sign
from kittylab.domain.errors import ValidationFailed
from kittylab.safety.approval_payload import ApprovalPayload

Signer = Callable[[Path, bytes], str]


class EventNotPending(ValidationFailed):
    """The event was already decided (or has expired): there is nothing to sign."""


def register(app: typer.Typer, friendly: Any) -> None:
    app.command("approve")(friendly(approve))
    app.command("deny")(friendly(deny))


def approve(
    event: Annotated[str, typer.Argument(help="The safety event's id.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key", dir_okay=False, help="Your private key file (OpenSSH, FIDO2 or Ed25519)."
        ),
    ],
    ppe: Annotated[
        list[str] | None,
        typer.Option("--ppe", help="PPE you are wearing, e.g. --ppe goggles; repeatable."),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Sign and send your approval of EVENT."""
    client = ApiClient(url)
    try:
        typer.echo(approve_event(client, _event_id(event), key, ppe or []))
    finally:
        client.close()


def deny(
    event: Annotated[str, typer.Argument(help="The safety event's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; shown to the initiator.")],
    url: UrlOption = None,
) -> None:
    """Deny EVENT: the action it holds is not carried out."""
    if not reason.strip():
        raise ValidationFailed("--reason", "is required: say why the action is denied")
    client = ApiClient(url)
    try:
        event_id = _event_id(event)
        client.post(f"/api/safety/events/{event_id}/deny", {"reason": reason.strip()})
        typer.echo(f"denied {event_id}")
    finally:
        client.close()


def approve_event(
    client: ApiClient, event_id: UUID, key_file: Path, ppe: list[str], signer: Signer = sign
) -> str:
    """Fetch, sign and approve the event; the line to print about the outcome."""
    event = client.get(f"/api/safety/events/{event_id}")
    if event.get("status") != "pending":
        raise EventNotPending(
            "EVENT", f"event {event_id} is {event.get('status')}, not pending: nothing to approve"
        )
    payload = payload_for(event, nonce=secrets.token_urlsafe(24))
    canonical = payload.canonical()
    signature = signer(key_file, canonical)
    answer = client.post(
        f"/api/safety/events/{event_id}/approve",
        {
            "nonce": payload.nonce,
            "signature": signature,
            "signedPayload": canonical.decode("ascii"),
            "ppe": ppe,
        },
    )
    return outcome(answer)


def payload_for(event: dict[str, Any], nonce: str) -> ApprovalPayload:
    """The payload the server builds from its stored event, built here from the API's
    view of it. A field the server did not send is an error, not a guess."""
    try:
        return ApprovalPayload(
            event_id=UUID(event["id"]),
            intent=str(event["intent"]),
            device_id=UUID(event["deviceId"]) if event.get("deviceId") else None,
            zone_id=UUID(event["zoneId"]) if event.get("zoneId") else None,
            initiator_id=UUID(event["initiatedBy"]),
            nonce=nonce,
            expires_at=datetime.fromisoformat(event["expiresAt"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed(
            "EVENT", f"the server's event is missing or garbles a field the signature covers: {exc}"
        ) from None


def outcome(event: dict[str, Any]) -> str:
    if event.get("status") == "approved":
        return "approved — the command is dispatched"
    missing = [str(m) for m in event.get("missing") or []]
    if missing:
        return f"your approval is recorded; still missing: {', '.join(missing)}"
    return f"your approval is recorded; the event is {event.get('status')}"


def _event_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ValidationFailed("EVENT", f"{text!r} is not an event id") from None
