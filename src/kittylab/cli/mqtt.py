"""``kittylab mqtt``: the bus's identities on the server host (issue 13).

``config`` writes Mosquitto's password file and ACL from the lab; ``device`` and
``detector`` issue a credential and print its password once (only its hash is kept);
``command-key`` prints the public key devices verify commands with.
They work on the identities file in the data dir, as ``kittylab serve`` does, so run them
as the user that runs the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kittylab import bootstrap
from kittylab.adapters.bus.credentials import Credential
from kittylab.adapters.bus.mosquitto import write_config
from kittylab.config import Settings
from kittylab.safety.command_signature import key_id, public_key_text

mqtt_app = typer.Typer(help="The MQTT bus's identities and Mosquitto files.", no_args_is_help=True)


def register(app: typer.Typer, friendly: Callable[..., Any]) -> None:
    mqtt_app.command("config")(friendly(config))
    mqtt_app.command("device")(friendly(device))
    mqtt_app.command("detector")(friendly(detector))
    mqtt_app.command("command-key")(friendly(command_key))
    app.add_typer(mqtt_app, name="mqtt")


def config(
    out: Annotated[Path, typer.Option("--out", help="Folder for passwd, acl, kittylab.conf.")],
) -> None:
    """Write Mosquitto's password file and ACL for the lab's identities."""
    files = write_config(bootstrap.bus_identities(Settings()), out)
    typer.echo(f"wrote {files.password_file}, {files.acl_file} and {files.config}")
    typer.echo(f"add to mosquitto.conf: include_dir {out}  (or copy {files.config.name}'s lines)")
    typer.echo("re-run after issuing a credential, then reload Mosquitto (SIGHUP)")


def device(
    external_id: Annotated[str, typer.Argument(help="The device's external id.")],
) -> None:
    """Issue (or replace) a device's bus credential; the password is shown only now."""
    identities = bootstrap.bus_identities(Settings())
    _show(identities.issue_device(external_id))
    identities.save()


def detector(name: Annotated[str, typer.Argument(help="A name for the detector.")]) -> None:
    """Issue (or replace) a detector's bus credential; the password is shown only now."""
    identities = bootstrap.bus_identities(Settings())
    _show(identities.issue_detector(name))
    identities.save()


def command_key() -> None:
    """Print the public key every device command is signed with, for firmware that
    verifies commands (created on first use, like the key itself)."""
    signer = bootstrap.command_signer(Settings())
    typer.echo(public_key_text(signer.public_key))
    typer.echo(f"key id: {key_id(signer.public_key)}", err=True)
    typer.echo(
        f"private key: {bootstrap.command_key_file(Settings())} (mode 0600; every process "
        "that sends commands needs the same file)",
        err=True,
    )


def _show(credential: Credential) -> None:
    typer.echo(f"username: {credential.username}")
    typer.echo(f"password: {credential.password}")
    typer.echo("store it in the device now: it is not kept and cannot be shown again")
