"""``kittylab keys``: approver keys.

- ``enrol`` and ``confirm`` talk to the running server (``KITTYLAB_URL``,
  ``KITTYLAB_TOKEN``): an approver enrols their own key, proving they hold it by signing
  the server's challenge here, where the private key is; a second person with the safety
  role confirms it before it signs anything (issue 13).
- ``add``, ``list`` and ``revoke`` work on the database directly (like ``kittylab
  users``): the operator's path on the server host, for the first keys and lost ones,
  without a token. A key added there needs no confirmation; each change is audited with
  no actor (the server's operator) and ``via: cli``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from kittylab.cli.client import ApiClient
from kittylab.cli.options import UrlOption
from kittylab.cli.signing import public_key_of, sign
from kittylab.domain.errors import ValidationFailed
from kittylab.safety.enrolment import ENROLMENT_NAMESPACE, enrolment_message

Signer = Callable[[Path, bytes], str]

keys_app = typer.Typer(help="Approver keys: the public keys approvals are signed with.")


def register(app: typer.Typer, friendly: Any) -> None:
    keys_app.command("enrol")(friendly(enrol))
    keys_app.command("confirm")(friendly(confirm))
    keys_app.command("add")(friendly(add))
    keys_app.command("list")(friendly(list_))
    keys_app.command("revoke")(friendly(revoke))
    app.add_typer(keys_app, name="keys", no_args_is_help=True)


MAX_KEY_FILE = 64 * 1024


def read_key_text(file: str) -> str:
    """The public key in ``file``, or on stdin for ``-``."""
    if file == "-":
        return sys.stdin.read(MAX_KEY_FILE + 1)[:MAX_KEY_FILE]
    path = Path(file)
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_KEY_FILE)
    except OSError as exc:
        raise ValidationFailed("FILE", f"cannot read {file}: {exc.strerror}") from None


def connect(url: str | None) -> ApiClient:
    """The server's client (a seam: tests talk to the app in-process)."""
    return ApiClient(url)


def sign_enrolment(key_file: Path, message: bytes) -> str:
    """An enrolment proof: SSH signatures use the enrolment namespace, never the
    approvals' one."""
    return sign(key_file, message, namespace=ENROLMENT_NAMESPACE)


def enrol(
    key: Annotated[
        Path,
        typer.Option(
            "--key", dir_okay=False, help="Your private key file (OpenSSH, FIDO2 or Ed25519)."
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="What the key is, e.g. yubikey.")],
    public: Annotated[
        Path | None,
        typer.Option(
            "--public", dir_okay=False, help="The public key, when it is not KEY.pub beside it."
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Enrol one of your keys with the server: it signs the server's challenge with KEY
    here (the private key never leaves this machine). The key signs approvals once a
    second person with the safety role has confirmed it."""
    client = connect(url)
    try:
        typer.echo(enrol_key(client, key, name, public))
    finally:
        client.close()


def enrol_key(
    client: ApiClient,
    key_file: Path,
    name: str,
    public_file: Path | None = None,
    signer: Signer = sign_enrolment,
) -> str:
    """Ask for a challenge, build the enrolment message from its fields here (never sign
    bytes the server chose), sign it with ``key_file`` and send it; what happened, in
    words."""
    public_key = read_key_text(str(public_file)) if public_file else public_key_of(key_file)
    me = client.get("/api/me")
    user_id = UUID(str(me["id"]))
    issued = client.post(f"/api/users/{user_id}/keys/challenge", None)
    message = enrolment_message(
        challenge_id=UUID(str(issued["challengeId"])),
        challenge=str(issued["challenge"]),
        user_id=user_id,
        public_key=public_key,
        expires_at=datetime.fromisoformat(str(issued["expiresAt"])),
    )
    signature = signer(key_file, message)
    row = client.post(
        f"/api/users/{user_id}/keys",
        {
            "name": name,
            "publicKey": public_key,
            "challengeId": issued["challengeId"],
            "signature": signature,
        },
    )
    return (
        f"enrolled key {row['id']} ({row['name']}, {row['fingerprint']}); it signs nothing "
        "until a second person with the safety role confirms it: show them this fingerprint "
        f"and ask them to run `kittylab keys confirm {row['id']}`"
    )


def confirm(
    key_id: Annotated[str, typer.Argument(help="The key's id (from the owner's enrolment).")],
    url: UrlOption = None,
) -> None:
    """Confirm someone's enrolled key (the safety role; never your own). Check its
    fingerprint with its owner first, in person."""
    try:
        parsed_id = UUID(key_id)
    except ValueError:
        raise ValidationFailed("KEY_ID", f"{key_id!r} is not a key id") from None
    client = connect(url)
    try:
        row = client.post(f"/api/keys/{parsed_id}/confirm", None)
    finally:
        client.close()
    typer.echo(f"confirmed key {row['id']} ({row['name']}, {row['fingerprint']}): it signs now")


def add(
    username: Annotated[str, typer.Argument(help="Whose key it is (username).")],
    file: Annotated[str, typer.Argument(help="The public key file (the .pub), or - for stdin.")],
    name: Annotated[str, typer.Option("--name", help="What the key is, e.g. yubikey.")],
) -> None:
    """Register a public key USERNAME signs approvals with, on the server host (the
    operator's path: no proof of possession and no second person; audited)."""
    from kittylab.cli.main import _container, _settings
    from kittylab.people import identity
    from kittylab.safety import keys

    text = read_key_text(file)
    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        user = identity.find_user_by_username(session, username)
        row = keys.add_key(
            session,
            user_id=user.id,
            name=name,
            public_key=text,
            actor_id=None,
            now=c.clock(),
            via="cli",
        )
        parsed = keys.describe(row)
        fingerprint = parsed.fingerprint if parsed else "?"
        typer.echo(f"added key {row.id} ({row.name}, {fingerprint}) for {user.username}")


def list_(
    username: Annotated[str | None, typer.Argument(help="Only this person's keys.")] = None,
) -> None:
    """Print approver keys: id, owner, name, type, fingerprint, state."""
    from sqlalchemy import select

    from kittylab.adapters.db.tables import User
    from kittylab.cli.main import _container, _settings
    from kittylab.people import identity
    from kittylab.safety import keys

    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        user_id = identity.find_user_by_username(session, username).id if username else None
        names = {uid: name for uid, name in session.execute(select(User.id, User.username))}
        rows = keys.list_keys(session, user_id)
        if not rows:
            typer.echo("no keys")
            return
        for row in rows:
            parsed = keys.describe(row)
            kind = parsed.kind.label if parsed else "unreadable"
            fingerprint = parsed.fingerprint if parsed else "-"
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            typer.echo(
                f"{row.id}  {names.get(row.user_id, '?'):<16} {row.name:<16} {kind:<14} "
                f"{fingerprint}  {state}"
            )


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `kittylab keys list`).")],
) -> None:
    """Revoke a key at once; approvals signed with it are refused from then on."""
    from kittylab.cli.main import _container, _settings
    from kittylab.safety import keys

    try:
        parsed_id = UUID(key_id)
    except ValueError:
        raise ValidationFailed("KEY_ID", f"{key_id!r} is not a key id") from None
    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        row = keys.revoke_key(session, parsed_id, actor_id=None, now=c.clock(), via="cli")
        typer.echo(f"revoked key {row.id} ({row.name})")
