"""``kittylab approve`` and ``kittylab deny``: decide a pending safety event from a
terminal, through the running server's API (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``).

``approve`` fetches the event, shows the approver what they are about to sign (intent,
device, zone, requester, expiry and the held command's arguments) and asks; only then
builds the exact payload the server will check (``ApprovalPayload``, with a fresh nonce),
signs it with the approver's private key on this machine (``kittylab.cli.signing``) and
sends the signature. The private key never leaves the machine.

The server's answer is not trusted further than it can be checked (issue 13: a proxy that
answered event B for event A once turned an approval of a ``printer_heat`` into one of a
door unlock): an event with another id than the one asked for, or another intent or
device than ``--intent`` / ``--device`` pin, is refused before anything is signed, and the
arguments' digest is computed here from the arguments shown; a server digest that differs
is refused too.

A held lab change (``eventType: policy_change``, issue 13) is shown as what it is: the
list of what it weakens, the change hash the signature approves (its intent is
``lab_apply:<hash>``), the lab revision it was made against and what it would change.
The hash is recomputed here from the revision, the manifest shown and the weakening list
shown (``domain.lab_review.change_hash``), so a list shortened on the way, or a manifest
other than the one hashed, is refused before anything is signed; ``--change HASH`` pins
the change (the ``changeHash`` the sender was answered, or its first 12 characters).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import click
import typer

from kittylab.cli.client import ApiClient
from kittylab.cli.options import UrlOption
from kittylab.cli.signing import sign
from kittylab.domain.errors import KittyLabError, ValidationFailed
from kittylab.domain.lab_review import Weakening, change_hash
from kittylab.safety.approval_payload import ApprovalPayload, arguments_digest

Signer = Callable[[Path, bytes], str]
Confirm = Callable[[str], bool]


class EventNotPending(ValidationFailed):
    """The event was already decided (or has expired): there is nothing to sign."""


class RefusedToSign(KittyLabError):
    """What the server showed is not what the approver asked to approve; nothing signed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refusing to sign: {reason}; nothing was signed")


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
    intent: Annotated[
        str | None,
        typer.Option("--intent", help="Refuse to sign unless the event is for this intent."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="Refuse to sign unless the event is for this device (id or name)."
        ),
    ] = None,
    change: Annotated[
        str | None,
        typer.Option(
            "--change",
            help="Refuse to sign unless the event is this held lab change (its change hash, "
            "or at least its first 12 characters).",
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Sign without asking (scripts); still shows the event."),
    ] = False,
    url: UrlOption = None,
) -> None:
    """Show EVENT, ask, then sign and send your approval of it."""
    client = ApiClient(url)
    try:
        typer.echo(
            approve_event(
                client,
                _event_id(event),
                key,
                ppe or [],
                pinned=Pins(intent=intent, device=device, change=change),
                confirm=_yes if yes else _ask,
            )
        )
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


@dataclass(frozen=True)
class Pins:
    """What the approver said they approve, beyond the event id."""

    intent: str | None = None
    device: str | None = None
    """The device's id or external id."""
    change: str | None = None
    """A held lab change's hash, or a prefix of it (12 characters at least)."""


def _yes(_: str) -> bool:
    return True


def _ask(question: str) -> bool:
    try:
        return typer.confirm(question, default=False)
    except click.exceptions.Abort:  # end of input: no terminal to answer on
        return False


def approve_event(
    client: ApiClient,
    event_id: UUID,
    key_file: Path,
    ppe: list[str],
    signer: Signer = sign,
    *,
    pinned: Pins | None = None,
    confirm: Confirm = _ask,
) -> str:
    """Fetch the event, check it is the one asked for, show it, ask, sign and approve;
    the line to print about the outcome."""
    event = client.get(f"/api/safety/events/{event_id}")
    check_is_the_one_asked_for(event, event_id, pinned or Pins())
    if event.get("status") != "pending":
        raise EventNotPending(
            "EVENT", f"event {event_id} is {event.get('status')}, not pending: nothing to approve"
        )
    payload = payload_for(event, nonce=secrets.token_urlsafe(24))
    typer.echo(
        describe_lab_change(event, payload) if is_lab_change(event) else describe(event, payload)
    )
    if not confirm("Sign this approval?"):
        raise RefusedToSign("not confirmed")
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


def check_is_the_one_asked_for(event: Mapping[str, Any], event_id: UUID, pinned: Pins) -> None:
    """Refuse an event other than the one the approver named (id, and intent and device
    when pinned)."""
    if str(event.get("id")) != str(event_id):
        raise RefusedToSign(
            f"the server answered event {_shown(event.get('id'))} when asked for {event_id}"
        )
    if pinned.intent is not None and event.get("intent") != pinned.intent:
        raise RefusedToSign(
            f"event {event_id} is {_shown(event.get('intent'))}, not {pinned.intent}"
        )
    if pinned.device is not None and pinned.device not in (
        event.get("deviceId"),
        event.get("deviceExternalId"),
    ):
        raise RefusedToSign(
            f"event {event_id} is for device {_shown(event.get('deviceExternalId'))} "
            f"({_shown(event.get('deviceId'))}), not {pinned.device}"
        )
    if is_lab_change(event):
        held = check_lab_change(event)
        if pinned.change is not None and not _same_change(held, pinned.change):
            raise RefusedToSign(f"event {event_id} is lab change {held}, not {pinned.change}")
    elif pinned.change is not None:
        raise RefusedToSign(
            f"event {event_id} is {_shown(event.get('intent'))}, not lab change {pinned.change}"
        )


LAB_CHANGE = "policy_change"
LAB_CHANGE_PREFIX = "lab_apply:"
MIN_CHANGE_PREFIX = 12


def is_lab_change(event: Mapping[str, Any]) -> bool:
    """A held lab change, by its type or by its intent: a server that calls a
    ``lab_apply:`` intent something else is checked as a lab change all the same."""
    return event.get("eventType") == LAB_CHANGE or str(event.get("intent") or "").startswith(
        LAB_CHANGE_PREFIX
    )


def _same_change(held: str, pinned: str) -> bool:
    pinned = pinned.strip().lower()
    return len(pinned) >= MIN_CHANGE_PREFIX and held.startswith(pinned)


def check_lab_change(event: Mapping[str, Any]) -> str:
    """The change hash of a held lab change, recomputed from what is shown (the revision,
    the manifest and the weakening list); refused when it is not the one the event's
    signed intent names."""
    details = event.get("details")
    change = details.get("change") if isinstance(details, Mapping) else None
    if not isinstance(details, Mapping) or not isinstance(change, Mapping):
        raise RefusedToSign("the server does not show the held lab change")
    manifest = details.get("manifest")
    listed = change.get("weakening")
    if not isinstance(manifest, str) or not isinstance(listed, list) or not listed:
        raise RefusedToSign("the server does not show the held manifest and what it weakens")
    try:
        weakening = [Weakening(str(w["kind"]), str(w["subject"]), str(w["change"])) for w in listed]
    except (KeyError, TypeError) as exc:
        raise RefusedToSign(f"the weakening list shown is garbled ({exc})") from None
    manifest_sha256 = hashlib.sha256(manifest.encode("utf-8")).hexdigest()
    if change.get("manifest_sha256") != manifest_sha256:
        raise RefusedToSign("the manifest shown is not the one the held change was made of")
    held = change_hash(str(change.get("revision")), manifest_sha256, weakening)
    if event.get("intent") != LAB_CHANGE_PREFIX + held or change.get("hash") != held:
        raise RefusedToSign(
            "what the server shows (the weakening list, the revision or the manifest) does "
            "not match its change hash: something between you and the server changed it"
        )
    return held


def payload_for(event: dict[str, Any], nonce: str) -> ApprovalPayload:
    """The payload the server builds from its stored event and held command, built here
    from the API's view of them. The arguments' digest is computed here from the
    arguments shown; a server digest that differs means something between here and the
    server changed them. A field the server did not send is an error, not a guess."""
    command_id: UUID | None = None
    digest: str | None = None
    try:
        if event.get("commandId"):
            command_id = UUID(event["commandId"])
            arguments = event.get("payload")
            if not isinstance(arguments, dict):
                raise RefusedToSign(
                    "the server does not show the held command's arguments "
                    "(a server older than this client?)"
                )
            digest = arguments_digest(arguments)
            claimed = event.get("payloadDigest")
            if claimed is not None and claimed != digest:
                raise RefusedToSign(
                    "the arguments shown do not match the server's digest of them: "
                    "something between you and the server changed them"
                )
        return ApprovalPayload(
            event_id=UUID(event["id"]),
            intent=str(event["intent"]),
            device_id=UUID(event["deviceId"]) if event.get("deviceId") else None,
            zone_id=UUID(event["zoneId"]) if event.get("zoneId") else None,
            initiator_id=UUID(event["initiatedBy"]),
            nonce=nonce,
            expires_at=datetime.fromisoformat(event["expiresAt"]),
            command_id=command_id,
            arguments_digest=digest,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed(
            "EVENT", f"the server's event is missing or garbles a field the signature covers: {exc}"
        ) from None


def describe(event: Mapping[str, Any], payload: ApprovalPayload) -> str:
    """What the approver is about to sign, in lines a person reads before saying yes."""
    device = _shown(event.get("deviceExternalId") or payload.device_id or "none")
    if event.get("deviceName"):
        device += f" ({_shown(event['deviceName'])})"
    remaining = payload.expires_at - datetime.now(UTC)
    minutes = max(0, int(remaining.total_seconds())) // 60
    lines = [
        f"Event:        {payload.event_id}",
        f"Intent:       {_shown(payload.intent)}",
        f"Device:       {device}",
        f"Zone:         {_shown(event.get('zoneName') or payload.zone_id or 'none')}",
        f"Requested by: {_shown(event.get('initiatorName') or payload.initiator_id)}",
        f"Expires:      {payload.expires_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"(in {minutes} min)",
    ]
    arguments = event.get("payload")
    if payload.command_id is None:
        lines.append("Arguments:    (no command held)")
    elif not arguments:
        lines.append("Arguments:    (none)")
    else:
        lines.append("Arguments:")
        lines.extend(f"  {_shown(name)}: {_value(value)}" for name, value in arguments.items())
        lines.append(f"Digest:       {payload.arguments_digest}")
    missing = [str(m) for m in event.get("missing") or []]
    if missing:
        lines.append(f"Still needs:  {'; '.join(_shown(m) for m in missing)}")
    return "\n".join(lines)


def describe_lab_change(event: Mapping[str, Any], payload: ApprovalPayload) -> str:
    """A held lab change, as the approver reads it before saying yes: what it weakens, the
    hash the signature approves, and what it would change."""
    details: Mapping[str, Any] = event.get("details") or {}
    change: Mapping[str, Any] = details.get("change") or {}
    remaining = payload.expires_at - datetime.now(UTC)
    minutes = max(0, int(remaining.total_seconds())) // 60
    lines = [
        f"Event:        {payload.event_id}",
        "Lab change:   a manifest that weakens safety, applied whole if approved",
        f"Change hash:  {_shown(change.get('hash'))}",
        f"Lab revision: {_shown(change.get('revision'))} (void if the lab changes first)",
        f"Manifest:     sha256 {_shown(change.get('manifest_sha256'))}",
        f"Requested by: {_shown(event.get('initiatorName') or payload.initiator_id)}",
        f"Expires:      {payload.expires_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"(in {minutes} min)",
        "Weakens safety:",
    ]
    lines.extend(
        f"  - {_shown(w.get('kind'))}: {_shown(w.get('change'))}"
        for w in change.get("weakening") or []
    )
    tallies = details.get("tallies")
    if isinstance(tallies, Mapping):
        counts = [
            f"{_shown(kind)} "
            + ", ".join(f"{n} {what}" for what, n in t.items() if n and what != "unchanged")
            for kind, t in tallies.items()
            if isinstance(t, Mapping) and any(n for what, n in t.items() if what != "unchanged")
        ]
        if counts:
            lines.append(f"Would change: {'; '.join(counts)}")
    missing = [str(m) for m in event.get("missing") or []]
    if missing:
        lines.append(f"Still needs:  {'; '.join(_shown(m) for m in missing)}")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _shown(value)
    return json.dumps(value, ensure_ascii=False)


def _shown(value: object) -> str:
    """Text from the server as one line without control characters: an escape sequence
    could otherwise redraw the terminal to show something other than what is signed."""
    text = str(value)
    return text if text.isprintable() else json.dumps(text)


def outcome(event: dict[str, Any]) -> str:
    if event.get("status") == "approved":
        if is_lab_change(event):
            return "approved — the lab change is applied"
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
