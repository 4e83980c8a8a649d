"""``kittylab users invite NAME…``: a one-time link to enrol a passkey for the web console
(issue 17), one per person named, printed on the server host. Over the network no one sees
a link made for someone else: an admin's invite goes to the person's own email address
(``people.invites``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer

from kittylab import bootstrap
from kittylab.config import Settings
from kittylab.people.invites import console_url

__all__ = ["console_url", "invite", "register"]


def register(users_app: typer.Typer, friendly: Callable[[Any], Any]) -> None:
    users_app.command("invite")(friendly(invite))


def invite(
    usernames: Annotated[
        list[str], typer.Argument(help="The person's username (several: a link each).")
    ],
    minutes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=7 * 24 * 60,
            help="How long the link works (default: console.invite_minutes).",
        ),
    ] = None,
) -> None:
    """Print a one-time link for USERNAME to enrol a passkey and sign in to the console
    (several names: one line each, in order). Hand it to that person only: whoever opens
    it first becomes them. It works once, for a few minutes, and is audited."""
    from kittylab.people import identity, passkeys

    settings = Settings()
    lifetime = timedelta(minutes=minutes or settings.console.invite_minutes)
    with bootstrap.database_url_for(settings, lock=False) as url:
        bootstrap.upgrade_database(url)
        with bootstrap.application(settings, url) as c, c.database.unit_of_work() as s:
            issued = [
                passkeys.issue_invite(
                    s, identity.find_user_by_username(s, name), lifetime=lifetime, now=c.clock()
                )
                for name in usernames
            ]
    for name, link in zip(usernames, issued, strict=True):
        typer.echo(f"{console_url(settings)}/enrol#{link.token}")
        typer.secho(
            f"for {name}, valid until {link.expires_at:%Y-%m-%d %H:%M} UTC, once; "
            "open it in the browser the person will sign in with",
            err=True,
        )
