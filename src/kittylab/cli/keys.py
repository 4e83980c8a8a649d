"""``kittylab keys``: approver keys, on the database directly (like ``kittylab users``), so
an admin on the server can manage them without an API token. Changes are audited with
no actor (the server's operator) and ``via: cli``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from kittylab.domain.errors import ValidationFailed

keys_app = typer.Typer(help="Approver keys: the public keys approvals are signed with.")


def register(app: typer.Typer, friendly: Any) -> None:
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


def add(
    username: Annotated[str, typer.Argument(help="Whose key it is (username).")],
    file: Annotated[str, typer.Argument(help="The public key file (the .pub), or - for stdin.")],
    name: Annotated[str, typer.Option("--name", help="What the key is, e.g. yubikey.")],
) -> None:
    """Register a public key USERNAME signs approvals with."""
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
