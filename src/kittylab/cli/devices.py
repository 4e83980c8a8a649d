"""``kittylab devices`` and ``kittylab send``: the lab's equipment from a terminal, through
the running server's API (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kittylab.cli import live
from kittylab.cli.client import ApiClient, ApiProblem
from kittylab.cli.options import UrlOption
from kittylab.domain.errors import ValidationFailed

console = Console()

FINAL = ("acked", "failed")


def register(app: typer.Typer, friendly: Any) -> None:
    app.command("devices")(friendly(devices))
    app.command("send")(friendly(send))


def devices(
    url: UrlOption = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s.")] = False,
    kind: Annotated[str | None, typer.Option(help="Only this kind (printer, light …).")] = None,
) -> None:
    """The lab's devices and their live state."""
    client = ApiClient(url)
    try:
        live.show(console, lambda: _device_table(client, kind), watch=watch)
    finally:
        client.close()


def _device_table(client: ApiClient, kind: str | None) -> Table:
    zones = {z["id"]: z["name"] for z in client.all_items("/api/zones")}
    table = Table("device", "kind", "zone", "integration", "online", "state", box=None)
    for device in client.all_items("/api/devices", kind=kind):
        state = client.get(f"/api/devices/{device['id']}/state")
        online = device["onlineState"]
        colour = {"online": "green", "offline": "red", "fault": "yellow"}.get(online, "white")
        table.add_row(
            device["externalId"],
            device["kind"],
            zones.get(device["zoneId"], "?"),
            device["integration"],
            f"[{colour}]{online}[/{colour}]",
            describe_state(device["kind"], state.get("state")),
        )
    return table


def describe_state(kind: str, state: dict[str, Any] | None) -> str:
    """One line an operator reads at a glance."""
    if not state:
        return "-"
    if kind == "printer":
        text = str(state.get("state", "?"))
        if state.get("file"):
            text += f" {state['file']} {float(state.get('progress') or 0) * 100:.0f}%"
        nozzle, bed = state.get("nozzle") or {}, state.get("bed") or {}
        if nozzle:
            text += f"  nozzle {nozzle.get('actual')}/{nozzle.get('target')}°C"
        if bed:
            text += f"  bed {bed.get('actual')}/{bed.get('target')}°C"
        return text
    if kind == "light":
        return f"on {state.get('brightness', 100)}%" if state.get("on") else "off"
    if kind == "door":
        return "locked" if state.get("locked") else "UNLOCKED"
    if kind == "power":
        return f"on {state.get('watts', '')} W" if state.get("on") else "off"
    if kind == "sensor":
        return "  ".join(
            f"{name} {v.get('value')} {v.get('unit', '')}".strip()
            for name, v in state.items()
            if isinstance(v, dict)
        )
    return json.dumps(state, separators=(",", ":"))[:80]


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (30, true, "x"), else text."""
    payload: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed(pair, "arguments look like key=value, e.g. brightness=30")
        try:
            payload[key] = json.loads(raw)
        except ValueError:
            payload[key] = raw
    return payload


def send(
    device: Annotated[str, typer.Argument(help="External id or alias, e.g. prusa-mk4.")],
    intent: Annotated[str, typer.Argument(help="e.g. light_set_brightness, print_pause.")],
    arguments: Annotated[
        list[str] | None, typer.Argument(help="key=value payload, e.g. brightness=30.")
    ] = None,
    url: UrlOption = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the device confirms or the command fails.")
    ] = True,
) -> None:
    """Send one command and follow it until the device's state confirms it. A hazardous
    one is held for safety approval: the event id and what it still needs are printed."""
    payload = parse_arguments(arguments or [])
    client = ApiClient(url)
    try:
        matches = client.get("/api/devices", name=device)["items"]
        if not matches:
            raise ApiProblem(404, f"no device is called {device!r}", "device")
        target = matches[0]
        accepted = client.post(
            f"/api/device/{target['id']}/command", {"intent": intent, "payload": payload}
        )
        if accepted["status"] == "queued":
            # A print_start is a print job (issue 16): it is followed as a job, not a command.
            console.print(
                f"{intent} → {target['externalId']}: queued as print job {accepted['jobId']}; "
                "follow it with: kittylab jobs --watch"
            )
            return
        command_id = accepted["commandId"]
        if accepted["status"] == "awaiting_confirmation":
            event = accepted["hazardEventId"]
            console.print(
                f"[yellow]waiting for safety approval[/yellow]: {intent} → "
                f"{target['externalId']} is held (event {event}); nothing was sent"
            )
            for need in accepted.get("missing", []):
                console.print(f"  still missing: {need}")
            console.print(f"  approvers sign with: kittylab approve {event} --key KEYFILE")
            return
        console.print(f"{intent} → {target['externalId']}: accepted ({command_id})")
        if not wait:
            return
        command = _follow(client, command_id)
    finally:
        client.close()
    if command["status"] == "acked":
        console.print(f"[green]acked[/green]: {target['externalId']} confirms {intent}")
        return
    console.print(f"[red]{command['status']}[/red]: {command.get('failureReason') or ''}")
    raise typer.Exit(1)


def _follow(client: ApiClient, command_id: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    with console.status("waiting for the device to confirm…"):
        while True:
            command: dict[str, Any] = client.get(f"/api/commands/{command_id}")
            if command["status"] in FINAL or time.monotonic() > deadline:
                return command
            time.sleep(0.3)
