"""``kittylab tls init``: the lab's own CA and this server's certificate (issue 13).

Run on the server host, as the user that runs ``kittylab serve``: the files go to
``<data_dir>/tls`` (keys mode 0600), where ``kittylab serve`` and the embedded broker find
them when they listen beyond loopback. See docs/tls.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from kittylab.adapters import tls
from kittylab.config import Settings

tls_app = typer.Typer(help="The lab's certificate authority and HTTPS.", no_args_is_help=True)


def register(app: typer.Typer, friendly: Callable[..., Any]) -> None:
    tls_app.command("init")(friendly(init))
    app.add_typer(tls_app, name="tls")


def init(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A name or address tablets use to reach this server (repeat it); "
            "localhost, 127.0.0.1 and ::1 are always included. Default: this machine's "
            "host name.",
        ),
    ] = None,
    new_ca: Annotated[
        bool,
        typer.Option(
            "--new-ca", help="Replace the lab CA too (every tablet must install the new one)."
        ),
    ] = False,
) -> None:
    """Create the lab CA (once) and a server certificate for this machine's names."""
    names = ["localhost", "127.0.0.1", "::1", *host] if host else tls.default_names()
    issued = tls.init(tls.lab_tls(Settings().data_dir), names, new_ca=new_ca)
    lab = issued.tls
    typer.echo(("created the lab CA" if issued.new_ca else "kept the lab CA") + f": {lab.ca_cert}")
    typer.echo(f"  SHA-256 fingerprint {issued.ca_fingerprint}")
    typer.echo(f"  its key {lab.ca_key} (mode 0600) never leaves this machine")
    typer.echo(f"server certificate: {lab.server.cert} (key {lab.server.key}, mode 0600)")
    typer.echo(f"  for {', '.join(issued.names)}; valid until {issued.not_after:%Y-%m-%d}")
    typer.echo(
        f"install {lab.ca_cert} on the lab's tablets and laptops (check the fingerprint), then "
        "`kittylab serve --host 0.0.0.0` serves HTTPS with this certificate"
    )
