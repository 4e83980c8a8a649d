"""The web console (issue 17): pages at ``/`` (the floor), ``/sign-in``, ``/enrol`` and
``/sessions``; the fragments and actions they load from ``/console/…``; live updates at
``/console/events`` (Server-Sent Events); the API docs at ``/docs``.

Pages are rendered here (Jinja2) and made live with htmx; every action goes through the
same use cases and role checks as the API (``devices.requests.request_command``,
``safety.stop``), authenticated by the console's session cookie with its CSRF token
(``api/web_auth.py``). A refusal is the API's problem document, which the page shows in
words where the action was. From outside the lab's trusted networks the pages show no
action buttons, and every write is refused anyway (``api/networks.py``).

The other pages have routers of their own: ``console_talk`` (``/talk``), ``console_prints``
(``/prints``), ``console_safety`` (``/safety``); their live streams share ``live_response``.

The console installs as an app (a web app manifest and a service worker that keeps its
shell, so a screen that lost the server says so and reconnects by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import StringConstraints

from kittylab import bootstrap
from kittylab.adapters.db.tables import DeviceCommand
from kittylab.adapters.detectors.snapshots import HttpSnapshotSource
from kittylab.api import networks, web_auth
from kittylab.api.auth import Caller, UnitOfWork, container, require
from kittylab.api.routers import get_or_404
from kittylab.bootstrap import Container
from kittylab.devices.requests import request_command
from kittylab.domain.enums import CommandStatus, Role
from kittylab.domain.errors import AuthenticationRequired, NotFound, PermissionDenied
from kittylab.domain.networks import parse_address
from kittylab.domain.principal import Principal
from kittylab.domain.web_origin import is_localhost
from kittylab.monitoring.cameras import zone_camera_url
from kittylab.people import passkeys, web_sessions
from kittylab.safety import stop
from kittylab.web import floor
from kittylab.web.live import DeviceUpdate, FloorFeed, PresenceUpdate

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))

# The floor's quick actions switch equipment: the roles that may (the gate in
# ``request_command`` checks again, per intent).
CommandCaller = Annotated[Principal, Depends(require(Role.OPERATOR, Role.SAFETY, Role.ADMIN))]

router = APIRouter(include_in_schema=False)

ACTING_ROLES = (Role.OPERATOR, Role.SAFETY, Role.ADMIN)
"""Who sees quick actions and stops: the roles the command route admits."""

HEARTBEAT_SECONDS = 15.0
SESSION_RECHECK_SECONDS = 60.0

Intent = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class SignInNeeded(Exception):
    """A page was asked for without a working session: off to the sign-in page."""


def _asset_version() -> str:
    """Changes whenever a static file does, so browsers never mix old and new."""
    digest = hashlib.sha256()
    static = sorted(p for p in (WEB_DIR / "static").rglob("*") if p.is_file())
    for path in [*static, WEB_DIR / "vendor" / "SHA256SUMS", WEB_DIR / "templates" / "sw.js"]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()


def install(app: FastAPI, c: Container) -> None:
    """Mount the console's files and its sign-in redirect on ``app``."""
    static = StaticFiles(directory=str(WEB_DIR / "static"))
    vendor = StaticFiles(directory=str(WEB_DIR / "vendor"))
    app.mount("/console/static/vendor", vendor, name="console-vendor")
    app.mount("/console/static", static, name="console-static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        response = RedirectResponse("/sign-in", status_code=303)
        web_auth.clear_session_cookie(response, request, c)
        return response


def _viewer(
    request: Request, c: Annotated[Container, Depends(container)]
) -> web_sessions.ActiveSession:
    try:
        active = web_auth.active_session(request, c)
    except AuthenticationRequired:
        active = None
    if active is None:
        raise SignInNeeded()
    return active


Viewer = Annotated[web_sessions.ActiveSession, Depends(_viewer)]


def _canonical_host(request: Request, c: Container) -> str | None:
    """Passkeys for ``localhost`` cannot be used at 127.0.0.1: the address to go to
    instead, when the page was opened at a loopback IP."""
    console = c.settings.console
    host = request.url.hostname or ""
    address = parse_address(host)
    if console.origins or not is_localhost(console.rp_id) or address is None:
        return None
    if not address.is_loopback:
        return None
    port = f":{request.url.port}" if request.url.port else ""
    return f"{request.url.scheme}://{console.rp_id}{port}{request.url.path}"


def _page(
    request: Request, name: str, context: dict[str, Any], viewer: web_sessions.ActiveSession | None
) -> HTMLResponse:
    shown = None
    if viewer is not None:
        principal = viewer.principal
        shown = {
            "display_name": viewer.display_name,
            "username": principal.username,
            "roles": ", ".join(sorted(r.value for r in principal.roles)),
        }
    response = templates.TemplateResponse(
        request,
        name,
        {
            "viewer": shown,
            "csrf_token": viewer.csrf_token if viewer is not None else None,
            "asset_version": ASSET_VERSION,
            **context,
        },
    )
    # Pages hold a CSRF token and personal data: never cached, never framed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- pages -------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def floor_page(
    request: Request, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> Response:
    """The floor: zones, devices and their live state, presence, quick actions, stops."""
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    remote = not networks.is_trusted(request, c.settings.http)
    zones = floor.read_floor(
        uow,
        c.clock(),
        timedelta(seconds=c.settings.presence.ttl_seconds),
        simulated_cameras=c.settings.simulator.camera_base_url,
        viewer=viewer.principal,
    )
    can_act = not remote and viewer.principal.has_any(*ACTING_ROLES)
    return _page(
        request,
        "floor.html",
        {
            "page": "floor",
            "zones": zones,
            "remote": remote,
            "can_act": can_act,
            "can_lock": not remote,
            "stale_after": c.settings.devices.offline_after_seconds,
        },
        viewer,
    )


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, c: Annotated[Container, Depends(container)]) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    return _page(request, "sign_in.html", {"page": "sign-in"}, None)


@router.get("/enrol", response_class=HTMLResponse)
def enrol_page(request: Request, c: Annotated[Container, Depends(container)]) -> Response:
    """The enrolment link's page; the link's secret is in its #fragment, which browsers
    never send to a server (nor to its logs)."""
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    return _page(request, "enrol.html", {"page": "enrol"}, None)


@router.get("/sessions", response_class=HTMLResponse)
def sessions_page(
    request: Request,
    viewer: Viewer,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    user_id = viewer.principal.user_id
    limits = web_auth.limits(c.settings.console)
    return _page(
        request,
        "sessions.html",
        {
            "page": "sessions",
            "sessions": web_sessions.list_sessions(uow, user_id, c.clock(), limits),
            "passkeys": passkeys.list_passkeys(uow, user_id),
            "current_session": viewer.session_id,
        },
        viewer,
    )


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    """Swagger UI 5 (OpenAPI 3.1), served from the package: no CDN, works offline."""
    return templates.TemplateResponse(request, "docs.html", {"asset_version": ASSET_VERSION})


# --- installable (PWA) -------------------------------------------------------------------

ICONS = ("icon-192.png", "icon-512.png", "icon-maskable-512.png")


def _shell() -> list[str]:
    """What the service worker keeps: the offline page and every file a page loads."""
    version = f"?v={ASSET_VERSION}"
    return [
        "/offline",
        f"/console/static/console.css{version}",
        f"/console/static/console.js{version}",
        f"/console/static/vendor/htmx/htmx.min.js{version}",
        f"/console/static/vendor/htmx/sse.min.js{version}",
        *(f"/console/static/icons/{name}" for name in ICONS),
    ]


@router.get("/manifest.webmanifest")
def web_manifest() -> Response:
    """The web app manifest: the console installs as an app on a tablet or phone."""
    icons = [
        {"src": f"/console/static/icons/{name}", "sizes": "512x512", "type": "image/png"}
        for name in ICONS[1:]
    ]
    icons[1]["purpose"] = "maskable"
    manifest = {
        "name": "KittyLab console",
        "short_name": "KittyLab",
        "description": "The lab's floor, prints and safety desk.",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f4f5f7",
        "theme_color": "#0b5cad",
        "icons": [
            {"src": f"/console/static/icons/{ICONS[0]}", "sizes": "192x192", "type": "image/png"},
            *icons,
        ],
    }
    return Response(
        json.dumps(manifest),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/sw.js")
def service_worker(request: Request) -> Response:
    """The service worker, at the root so that it serves the whole console (its scope)."""
    body = templates.get_template("sw.js").render(asset_version=ASSET_VERSION, shell=_shell())
    return Response(
        body,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
    )


@router.get("/offline", response_class=HTMLResponse)
def offline_page(request: Request) -> Response:
    """The "reconnecting" shell the service worker shows when the server does not answer
    (kept in its cache; personal to no one, so it may be cached)."""
    response = templates.TemplateResponse(
        request, "offline.html", {"asset_version": ASSET_VERSION, "viewer": None}
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


# --- session actions ---------------------------------------------------------------------


@router.post("/console/sign-out")
def sign_out(
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    active = web_auth.active_session(request, c)
    if active is not None:
        web_sessions.revoke(
            uow, caller.user_id, active.session_id, c.clock(), actor_id=caller.user_id
        )
    response = Response(status_code=204, headers={"HX-Redirect": "/sign-in"})
    web_auth.clear_session_cookie(response, request, c)
    return response


@router.post("/console/sessions/{session_id}/revoke", response_class=HTMLResponse)
def revoke_session(
    session_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    web_sessions.revoke(uow, caller.user_id, session_id, c.clock(), actor_id=caller.user_id)
    return HTMLResponse('<tr><td colspan="5">Signed out.</td></tr>')


# --- the floor's actions -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    css: str
    title: str
    detail: str = ""
    command_id: UUID | None = None
    event_id: UUID | None = None
    poll: bool = False


def _fragment(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


@router.post("/console/devices/{device_id}/command/{intent}", response_class=HTMLResponse)
def command(
    device_id: UUID,
    intent: Intent,
    request: Request,
    caller: CommandCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """A quick action: ``POST /api/device/{id}/command`` with an empty payload, answered
    as the outcome's fragment (which follows the command until the device confirms)."""
    requested = request_command(
        uow,
        jobs=c.jobs,
        bus=c.bus,
        device_id=device_id,
        intent=intent,
        payload={},
        requester=caller,
        now=c.clock(),
        safety_context=bootstrap.safety_context(c.settings),
    )
    held = requested.held
    if held is not None:
        outcome = Outcome(
            "held",
            "Held for approval:",
            "still missing " + ("; ".join(held.missing) or "nothing") + ". Nothing was sent.",
            command_id=requested.command.id,
            event_id=held.event.id,
        )
    else:
        outcome = Outcome(
            "pending",
            "Sent:",
            "waiting for the device to confirm…",
            requested.command.id,
            poll=True,
        )
    return _fragment(request, "_command.html", outcome=outcome)


@router.get("/console/commands/{command_id}", response_class=HTMLResponse)
def command_outcome(
    command_id: UUID, request: Request, caller: Caller, uow: UnitOfWork
) -> HTMLResponse:
    row = get_or_404(uow, DeviceCommand, command_id, "command")
    if not caller.reads_all_records and row.requested_by != caller.user_id:
        raise PermissionDenied("only the safety and admin roles read others' commands")
    if row.status is CommandStatus.ACKED:
        outcome = Outcome("ok", "Done:", f"{row.intent} acked by the device.", row.id)
    elif row.status is CommandStatus.FAILED:
        outcome = Outcome(
            "failed", "Failed:", row.failure_reason or "the device did not confirm.", row.id
        )
    else:
        outcome = Outcome(
            "pending", "Sent:", f"{row.status.value}, waiting for the device…", row.id, poll=True
        )
    return _fragment(request, "_command.html", outcome=outcome)


@router.post("/console/stop", response_class=HTMLResponse)
def stop_lab(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The lab's stop (``POST /api/lab/stop``)."""
    result = stop.stop(uow, jobs=c.jobs, bus=c.bus, requester=caller, now=c.clock())
    return _fragment(request, "_stopped.html", result=result)


@router.post("/console/zones/{zone_id}/stop", response_class=HTMLResponse)
def stop_zone(
    zone_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """A zone's stop (``POST /api/zones/{id}/stop``)."""
    result = stop.stop(
        uow, jobs=c.jobs, bus=c.bus, requester=caller, now=c.clock(), zone_id=zone_id
    )
    return _fragment(request, "_stopped.html", result=result)


@router.get("/console/zones/{zone_id}/snapshot")
async def zone_snapshot(
    zone_id: UUID, _: Caller, c: Annotated[Container, Depends(container)]
) -> Response:
    """The zone camera's latest frame, fetched now (404 when the zone has no camera with
    a ``snapshot_url``; 503 when it does not answer)."""
    return await zone_camera_snapshot(c, zone_id)


async def zone_camera_snapshot(c: Container, zone_id: UUID) -> Response:
    """The zone camera's frame as a response (the floor's and a wall terminal's)."""

    def url() -> str | None:
        with c.database.unit_of_work() as session:
            return zone_camera_url(session, zone_id, simulated=c.settings.simulator.camera_base_url)

    found = await asyncio.to_thread(url)
    if found is None:
        raise NotFound("camera snapshot of zone", zone_id)
    monitoring = c.settings.monitoring
    source = HttpSnapshotSource(
        timeout=monitoring.snapshot_timeout_seconds, max_bytes=monitoring.snapshot_max_bytes
    )
    snapshot = await source.fetch(found)
    return Response(
        snapshot.data, media_type=snapshot.content_type, headers={"Cache-Control": "no-store"}
    )


# --- live --------------------------------------------------------------------------------


def _floor_feed(app: FastAPI, c: Container) -> FloorFeed:
    """The app's one live feed, made (and subscribed to the bus) by the first console
    that opens the floor."""
    feed: FloorFeed | None = getattr(app.state, "floor_feed", None)
    if feed is None:
        feed = FloorFeed(
            c.database,
            c.clock,
            refresh_seconds=c.settings.console.live_refresh_seconds,
            presence_ttl=timedelta(seconds=c.settings.presence.ttl_seconds),
        )
        if c.bus is not None:
            feed.attach(c.bus)
        app.state.floor_feed = feed
    return feed


def _updated(tile: floor.Tile, update: DeviceUpdate) -> floor.Tile:
    return dataclasses.replace(
        tile,
        online_state=update.online_state,
        state=update.state if update.state is not None else tile.state,
        reported_at=update.reported_at or tile.reported_at,
    )


class _RenderedTiles:
    """Each tile's live part rendered once for every console that shows it: fifty tablets
    reconnecting at once (a server restart) render each device twice (with and without
    actions), not a hundred times. Keyed by what the part shows; the oldest go first."""

    SIZE = 4096

    def __init__(self) -> None:
        self._html: OrderedDict[tuple[Any, ...], str] = OrderedDict()

    def __call__(self, tile: floor.Tile, can_act: bool) -> str:
        key = (
            tile.id,
            tile.kind,
            tile.intents,
            tile.online_state,
            tile.reported_at,
            _frozen(tile.state),
            bool(tile.locks),
            can_act,
        )
        html = self._html.get(key)
        if html is None:
            html = templates.get_template("_tile_live.html").render(tile=tile, can_act=can_act)
            self._html[key] = html
            if len(self._html) > self.SIZE:
                self._html.popitem(last=False)
        return html


def _frozen(value: Any) -> Any:
    """``value`` (JSON data) as something hashable."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


_render_tile = _RenderedTiles()


def _render_present(names: Sequence[str]) -> str:
    """A zone's "present:" line (``_present.html``, as the floor renders it at load)."""
    return templates.get_template("_present.html").render(present=names)


def _sse(event: str, html: str, event_id: str | None = None) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n{data}\n\n"


def live_response(
    request: Request,
    c: Container,
    source: AsyncGenerator[str | None, None],
    still_allowed: Callable[[], bool] | None = None,
) -> StreamingResponse:
    """A console page's Server-Sent Events, shared by every live page: what ``source``
    yields (framed events; ``None`` when it has nothing to say, at least every
    ``HEARTBEAT_SECONDS``), after a ``retry`` hint; a comment keeps the connection open
    when nothing was said for ``HEARTBEAT_SECONDS``; ``signed-out``, then the end, once
    the page's session stops working (checked every ``SESSION_RECHECK_SECONDS``), or
    ``still_allowed`` says no (a wall terminal's stream: its pairing, not a session)."""
    cookie = request.cookies.get(web_auth.SESSION_COOKIE)

    def still_signed_in() -> bool:
        if cookie is None:
            return True  # a bearer token: checked at connect
        try:
            with c.database.unit_of_work() as session:
                web_sessions.resolve(
                    session, cookie, c.clock(), web_auth.limits(c.settings.console)
                )
        except AuthenticationRequired:
            return False
        return True

    async def stream() -> AsyncIterator[str]:
        async with contextlib.aclosing(source):
            yield "retry: 2000\n\n"
            spoke = checked = time.monotonic()
            async for chunk in source:
                now = time.monotonic()
                if chunk:
                    spoke = now
                    yield chunk
                elif now - spoke >= HEARTBEAT_SECONDS:
                    spoke = now
                    yield ": still here\n\n"
                if now - checked > SESSION_RECHECK_SECONDS:
                    checked = now
                    if not await asyncio.to_thread(still_allowed or still_signed_in):
                        yield _sse("signed-out", "")
                        return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/console/events")
async def live_events(
    request: Request, caller: Caller, c: Annotated[Container, Depends(container)]
) -> StreamingResponse:
    """Server-Sent Events: ``device-<id>`` carries a tile's new live part whenever its
    device reports (the bus) or its stored state changes; every tile is sent first, so a
    reconnecting page catches up. ``zone-<id>-presence`` carries a zone's "present:" line
    when someone checks in or out there. ``signed-out`` when the session ends."""
    feed = _floor_feed(request.app, c)
    can_act = not caller.remote and caller.has_any(*ACTING_ROLES)

    def read() -> dict[UUID, floor.Tile]:
        with c.database.unit_of_work() as session:
            zones = floor.read_floor(
                session,
                c.clock(),
                timedelta(0),
                simulated_cameras=c.settings.simulator.camera_base_url,
                viewer=caller,
            )
        return {tile.id: tile for zone in zones for tile in zone.tiles}

    def read_present() -> dict[UUID, list[str]]:
        with c.database.unit_of_work() as session:
            return floor.present_names(
                session, c.clock(), timedelta(seconds=c.settings.presence.ttl_seconds)
            )

    stream = tile_events(feed, read, read_present, can_act=can_act)
    return live_response(request, c, stream)


async def tile_events(
    feed: FloorFeed,
    read: Callable[[], dict[UUID, floor.Tile]],
    read_present: Callable[[], dict[UUID, list[str]]],
    *,
    can_act: bool,
    zones: frozenset[UUID] | None = None,
) -> AsyncGenerator[str | None, None]:
    """Tiles as they change, for ``live_response``: every tile ``read`` gives first (a
    reconnecting page catches up), then a tile's live part whenever its device (one of
    those tiles) reports, and a zone's "present:" line when someone checks in or out there
    (``zones``: those zones only). A subscriber that fell behind reads everything again."""
    with feed.subscribe() as subscription:
        tiles = await asyncio.to_thread(read)
        for tile in tiles.values():
            yield _sse(f"device-{tile.id}", _render_tile(tile, can_act))
        while True:
            try:
                update = await asyncio.wait_for(subscription.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                update = None
            if subscription.lagged:
                subscription.lagged = False
                tiles = await asyncio.to_thread(read)
                for tile in tiles.values():
                    yield _sse(f"device-{tile.id}", _render_tile(tile, can_act))
                present = await asyncio.to_thread(read_present)
                for zone_id, names in present.items():
                    yield _sse(f"zone-{zone_id}-presence", _render_present(names))
            elif isinstance(update, PresenceUpdate):
                if zones is not None and update.zone_id not in zones:
                    continue  # a wall terminal hears of its own zone only
                yield _sse(f"zone-{update.zone_id}-presence", _render_present(update.present))
            elif update is not None and update.device_id in tiles:
                tile = _updated(tiles[update.device_id], update)
                tiles[tile.id] = tile
                yield _sse(f"device-{tile.id}", _render_tile(tile, can_act))
            yield None
