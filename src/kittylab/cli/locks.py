"""``kittylab locks``: lockout/tagout from a terminal, through the running server's API
(``KITTYLAB_URL``, ``KITTYLAB_TOKEN``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from kittylab.cli.client import ApiClient, ApiProblem
from kittylab.cli.options import UrlOption

console = Console()


def register(app: typer.Typer, friendly: Any) -> None:
    locks_app = typer.Typer(
        help="Lockout/tagout: personal locks that keep a device de-energised.",
        no_args_is_help=True,
    )
    locks_app.command("place")(friendly(place))
    locks_app.command("list")(friendly(list_locks))
    locks_app.command("remove")(friendly(remove))
    app.add_typer(locks_app, name="locks")


def resolve_device(client: ApiClient, device: str, option: str = "DEVICE") -> dict[str, Any]:
    """The device called ``device``: its uuid, external id or alias."""
    try:
        device_id = UUID(device)
    except ValueError:
        matches = client.get("/api/devices", name=device, includeRetired=True)["items"]
        if not matches:
            raise ApiProblem(404, f"no device is called {device!r}", option) from None
        found: dict[str, Any] = matches[0]
        return found
    by_id: dict[str, Any] = client.get(f"/api/devices/{device_id}")
    return by_id


def place(
    device: Annotated[str, typer.Argument(help="External id, alias or uuid, e.g. cnc-spindle.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why, e.g. 'changing the spindle belt'.")
    ],
    url: UrlOption = None,
) -> None:
    """Put your personal lock on a device: it cannot be powered on or unlocked until you
    remove it."""
    client = ApiClient(url)
    try:
        target = resolve_device(client, device)
        lock = client.post(f"/api/devices/{target['id']}/locks", {"reason": reason})
        others = [
            other
            for other in client.get(f"/api/devices/{target['id']}/locks")
            if other["id"] != lock["id"]
        ]
    finally:
        client.close()
    console.print(f"[yellow]locked out[/yellow] {lock['deviceExternalId']}: {lock['reason']}")
    console.print(f"lock {lock['id']}; remove it with: kittylab locks remove {lock['id']}")
    if others:
        names = ", ".join(other["ownerName"] for other in others)
        console.print(f"also locked by: {names}")


def list_locks(
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="Only this device (name or uuid).")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Include removed locks (history).")
    ] = False,
    url: UrlOption = None,
) -> None:
    """The locks that are on now (with --all, removed ones too), newest first."""
    client = ApiClient(url)
    try:
        device_id = resolve_device(client, device, "--device")["id"] if device else None
        rows = client.all_items(
            "/api/locks", deviceId=device_id, active=None if show_all else "true"
        )
    finally:
        client.close()
    if not rows:
        console.print("no locks" if show_all else "no device is locked out")
        return
    table = Table("lock", "device", "held by", "since", "reason", box=None)
    if show_all:
        table.add_column("removed")
    for row in rows:
        cells = [
            row["id"],
            row["deviceExternalId"],
            row["ownerName"],
            _when(row["placedAt"]),
            row["reason"],
        ]
        if show_all:
            cells.append(_removal(row))
        table.add_row(*cells)
    console.print(table)


def remove(
    lock_id: Annotated[str, typer.Argument(help="The lock's id (see `kittylab locks list`).")],
    override: Annotated[
        str | None,
        typer.Option(
            "--override", help="Safety role only: remove someone else's lock, saying why."
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Take your lock off a device (or, with --override, someone else's)."""
    try:
        UUID(lock_id)
    except ValueError:
        raise ApiProblem(422, f"{lock_id!r} is not a lock id", "LOCK_ID") from None
    client = ApiClient(url)
    try:
        body = {"overrideReason": override} if override is not None else {}
        lock = client.post(f"/api/locks/{lock_id}/remove", body)
        remaining = client.get(f"/api/devices/{lock['deviceId']}/locks")
    finally:
        client.close()
    name = lock["deviceExternalId"]
    if lock["overrideEventId"]:
        console.print(
            f"[red]overrode[/red] {lock['ownerName']}'s lock on {name} "
            f"(safety event {lock['overrideEventId']}); {lock['ownerName']} is notified"
        )
    else:
        console.print(f"removed your lock on {name}")
    if remaining:
        holders = ", ".join(other["ownerName"] for other in remaining)
        console.print(f"{name} is still locked out by: {holders}")
    else:
        console.print(f"{name} has no locks left")


def _when(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _removal(row: dict[str, Any]) -> str:
    if row["active"]:
        return "-"
    how = "override" if row["overrideEventId"] else "by owner"
    return f"{_when(row['removedAt'])} ({how})"
