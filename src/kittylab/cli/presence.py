"""``kittylab presence``: check in and out, confirm someone's check-in, see who is where,
and (safety role) override, through the running server's API (``KITTYLAB_URL``,
``KITTYLAB_TOKEN``).

Zones and people are named as an operator knows them: a zone by its name (or id), a
person by username, display name (or id). Times are printed in the terminal's time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from kittylab.cli.client import ApiClient, ApiProblem
from kittylab.cli.options import UrlOption
from kittylab.domain.errors import ValidationFailed

presence_app = typer.Typer(
    help="Who is in which zone: check in, check out, confirm, list, override.",
    no_args_is_help=True,
)

ZoneArgument = Annotated[str, typer.Argument(help="Zone name (e.g. laser-room) or id.")]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Someone else (username or name); needs the safety role."),
]


def connect(url: str | None) -> ApiClient:
    """The API client commands use; a seam for tests."""
    return ApiClient(url)


def register(app: typer.Typer, friendly: Callable[..., Any]) -> None:
    presence_app.command("checkin")(friendly(checkin))
    presence_app.command("checkout")(friendly(checkout))
    presence_app.command("confirm")(friendly(confirm))
    presence_app.command("list")(friendly(list_presence))
    presence_app.command("override")(friendly(override))
    app.add_typer(presence_app, name="presence")


def checkin(zone: ZoneArgument, user: UserOption = None, url: UrlOption = None) -> None:
    """Check yourself (or --user) in to ZONE. Presence counts for the configured TTL."""
    _record(zone, user, url, "present")


def checkout(zone: ZoneArgument, user: UserOption = None, url: UrlOption = None) -> None:
    """Check yourself (or --user) out of ZONE."""
    _record(zone, user, url, "vacated")


def _record(zone: str, user: str | None, url: str | None, status: str) -> None:
    client = connect(url)
    try:
        found = resolve_zone(client, zone)
        person = resolve_user(client, user) if user else client.get("/api/me")
        body: dict[str, Any] = {"zoneId": found["id"], "status": status}
        if user:
            body["userId"] = person["id"]
        row = client.post("/api/presence", body)
        typer.echo(describe(row, person, found, _ttl(client, found)))
        if status == "present" and "manual" not in found.get("presenceSources", ["manual"]):
            typer.echo(
                f"In {found['name']} a check-in by hand counts for hazardous work only once "
                "someone already there confirms it: kittylab presence confirm "
                f"{found['name']} {person['username']}"
            )
    finally:
        client.close()


def confirm(
    zone: ZoneArgument,
    user: Annotated[str, typer.Argument(help="Who you see there: username, name or id.")],
    url: UrlOption = None,
) -> None:
    """Confirm that USER, who checked in to ZONE, is there: you must be there yourself (by
    a badge, a confirmed check-in or an override). Their presence then counts where the
    zone accepts confirmed check-ins (high-hazard zones by default)."""
    client = connect(url)
    try:
        found = resolve_zone(client, zone)
        person = resolve_user(client, user)
        row = client.post("/api/presence/confirm", {"zoneId": found["id"], "userId": person["id"]})
        typer.echo("confirmed: " + describe(row, person, found, _ttl(client, found)))
    finally:
        client.close()


def list_presence(
    zone: Annotated[str | None, typer.Option("--zone", help="Only this zone.")] = None,
    url: UrlOption = None,
) -> None:
    """Who counts as present now, zone by zone, with how they were seen and until when."""
    client = connect(url)
    try:
        zones = [resolve_zone(client, zone)] if zone else client.all_items("/api/zones")
        people = {u["id"]: u for u in client.all_items("/api/users")}
        for z in sorted(zones, key=lambda item: str(item["name"])):
            typer.echo(_zone_lines(client, z, people))
    finally:
        client.close()


def _zone_lines(client: ApiClient, zone: dict[str, Any], people: dict[str, Any]) -> str:
    occupancy = client.get(f"/api/zones/{zone['id']}/occupancy")
    present = occupancy["presentUserIds"]
    counting = set(occupancy.get("countingUserIds", present))
    if not present:
        return f"{zone['name']}: nobody"
    ttl = timedelta(seconds=occupancy["ttlSeconds"])
    lines = [f"{zone['name']}:"]
    for user_id in present:
        person = people.get(user_id, {"displayName": user_id})
        # Present, but not by a source this zone counts (a bare self check-in in a
        # high-hazard zone): said, so nobody relies on it.
        note = "" if user_id in counting else "; does not count for hazardous work here"
        # The newest observation is what makes them present (lists are newest first).
        # Someone else's history is for the safety and admin roles only: without it, who
        # is present is all there is to say.
        try:
            newest = client.get("/api/presence", zoneId=zone["id"], userId=user_id, limit=1)
        except ApiProblem as exc:
            if exc.status != 403:
                raise
            lines.append(f"  {person['displayName']}  present{note}")
            continue
        row = newest["items"][0]
        seen = _local(row["observedAt"])
        lines.append(
            f"  {person['displayName']}  since {seen:%H:%M} ({_how(row['source'])}), "
            f"until {seen + ttl:%H:%M}{note}"
        )
    return "\n".join(lines)


def override(
    zone: ZoneArgument,
    user: Annotated[str, typer.Argument(help="The person: username, name or id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    vacated: Annotated[
        bool, typer.Option("--vacated", help="They are NOT there (default: they are).")
    ] = False,
    url: UrlOption = None,
) -> None:
    """(safety role) Say USER is in ZONE, or with --vacated that they are not.

    For when a badge reader is down or someone left without badging out. Recorded as an
    approved override safety event naming you and the reason, and audited."""
    client = connect(url)
    try:
        found = resolve_zone(client, zone)
        person = resolve_user(client, user)
        result = client.post(
            "/api/presence/override",
            {
                "zoneId": found["id"],
                "userId": person["id"],
                "status": "vacated" if vacated else "present",
                "reason": reason,
            },
        )
        typer.echo(
            "override recorded: "
            + describe(result["presence"], person, found, _ttl(client, found))
            + f" (safety event {result['safetyEvent']['id']})"
        )
    finally:
        client.close()


def resolve_zone(client: ApiClient, name: str) -> dict[str, Any]:
    zones = client.all_items("/api/zones")
    for zone in zones:
        if name in (zone["name"], zone["id"]):
            return dict(zone)
    known = ", ".join(sorted(z["name"] for z in zones)) or "none"
    raise ValidationFailed("ZONE", f"no zone is called {name!r}; zones: {known}")


def resolve_user(client: ApiClient, name: str) -> dict[str, Any]:
    users = client.all_items("/api/users")
    wanted = name.casefold()
    for key in ("id", "username", "displayName"):
        matches = [u for u in users if str(u[key]).casefold() == wanted]
        if len(matches) == 1:
            return dict(matches[0])
        if len(matches) > 1:
            raise ValidationFailed("USER", f"{name!r} names several people; use the username")
    raise ValidationFailed("USER", f"nobody is called {name!r}")


def describe(
    row: dict[str, Any], person: dict[str, Any], zone: dict[str, Any], ttl: timedelta
) -> str:
    """One sentence an operator reads: who, where, and until when it counts."""
    who, where = person["displayName"], zone["name"]
    seen = _local(row["observedAt"])
    if row["status"] == "present":
        return f"{who} is checked in to {where} until {seen + ttl:%H:%M}"
    if row["status"] == "vacated":
        return f"{who} is checked out of {where} (at {seen:%H:%M})"
    return f"{who}'s presence in {where} is unknown (since {seen:%H:%M})"


def _ttl(client: ApiClient, zone: dict[str, Any]) -> timedelta:
    occupancy = client.get(f"/api/zones/{zone['id']}/occupancy")
    return timedelta(seconds=occupancy["ttlSeconds"])


def _local(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone()


def _how(source: str) -> str:
    return {
        "unifi": "badge",
        "manual": "checked in",
        "override": "safety override",
        "confirmed": "check-in confirmed",
    }.get(source, source)
