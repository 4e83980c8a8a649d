"""``kittylab stop [ZONE]``: put every device of a zone, or of the whole lab, in its safe
state at once, through the running server's API (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``), as
``POST /api/zones/{id}/stop`` or ``POST /api/lab/stop`` (``safety.stop``)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console

from kittylab.cli.client import ApiClient, ApiProblem
from kittylab.cli.options import UrlOption

console = Console()


def register(app: typer.Typer, friendly: Any) -> None:
    app.command("stop")(friendly(stop))


def stop(
    zone: Annotated[
        str | None, typer.Argument(help="Zone name or uuid, e.g. laser-room; none: the lab.")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Stop now: pause prints, cool heaters, power relays off and lock doors in ZONE (or in
    every zone). Never held for approval; operators, safety and admin."""
    client = ApiClient(url)
    try:
        if zone is None:
            answer = client.post("/api/lab/stop", {})
        else:
            answer = client.post(f"/api/zones/{resolve_zone(client, zone)}/stop", {})
    finally:
        client.close()
    for command in answer["commands"]:
        console.print(f"{command['intent']} → {command['deviceName']}: sent")
    for refusal in answer["refusals"]:
        console.print(
            f"[red]{refusal['intent']} → {refusal['deviceName']}: refused[/red]: "
            f"{refusal['reason']}"
        )
    where = f"zone {zone}" if zone is not None else "the whole lab"
    console.print(
        f"stop of {where}: {len(answer['commands'])} command(s) sent, "
        f"{len(answer['refusals'])} refused"
    )
    if answer["refusals"]:
        raise typer.Exit(1)


def resolve_zone(client: ApiClient, zone: str) -> str:
    """The id of the zone called ``zone`` (its name or uuid)."""
    try:
        return str(UUID(zone))
    except ValueError:
        pass
    cursor: str | None = None
    while True:
        page = client.get("/api/zones", limit=100, cursor=cursor)
        for item in page["items"]:
            if item["name"] == zone:
                return str(item["id"])
        cursor = page.get("nextCursor")
        if not cursor:
            raise ApiProblem(404, f"no zone is called {zone!r}", "ZONE")
