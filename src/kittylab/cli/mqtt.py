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
from kittylab.adapters.bus.mosquitto import TlsListener, write_config
from kittylab.adapters.tls import ServerCertificate, lab_tls
from kittylab.config import Settings
from kittylab.domain.errors import ValidationFailed
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
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", help="Add a TLS listener with the certificate of `kittylab tls init`."
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Add a TLS listener with this certificate.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="The key of --tls-cert.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the TLS listener.", min=1, max=65535)] = 8883,
) -> None:
    """Write Mosquitto's password file and ACL for the lab's identities (and, with --tls or
    --tls-cert/--tls-key, a TLS listener)."""
    settings = Settings()
    listener = None
    if (tls_cert is None) != (tls_key is None):
        raise ValidationFailed("tls_cert", "give --tls-cert and --tls-key together")
    if tls_cert is not None and tls_key is not None:
        listener = TlsListener(ServerCertificate(tls_cert, tls_key), port)
    elif tls:
        lab = lab_tls(settings.data_dir)
        if not lab.has_server_certificate:
            raise ValidationFailed("tls", "no lab certificate yet: run `kittylab tls init` first")
        listener = TlsListener(lab.server, port)
    files = write_config(bootstrap.bus_identities(settings), out, listener)
    typer.echo(f"wrote {files.password_file}, {files.acl_file} and {files.config}")
    if listener is not None:
        typer.echo(
            f"TLS listener on port {port} with {listener.certificate.cert}: Mosquitto's user "
            "must be able to read its key; clients connect to mqtts://HOST:"
            f"{port} and trust the lab CA"
        )
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
