"""What a wall terminal's tablet shows and does (issue 18, item 3): ``/terminal``.

A tablet that opens ``/terminal`` the first time (no terminal cookie, or a revoked one)
becomes a waiting terminal and shows a pairing code, asking ``/console/terminal/status``
every few seconds until an admin has confirmed the code for a zone (``pairing.py``). Its
cookie (``kittylab_terminal``: ``HttpOnly``, ``SameSite=Strict``) names the terminal and
nothing else: it is not a person's session, and no API route or console action accepts it.

Paired, the tablet shows its zone only: the devices and their live state
(``/console/terminal/events``), the camera, pending approvals and alerts
(``/console/terminal/panel``), who is there. A person taps their security key
(``/console/terminal/tap``, a WebAuthn assertion of a passkey enrolled here) to check in;
the tablet then holds that person's short session (``people.terminals``), and the zone's
stop, push-to-talk and check-out act as them, through the same routes and gate as the
console. The kiosk's own reads never touch that session, so it ends
``console.terminal_tap_seconds`` after the person last did something.

Every route here answers from the lab's trusted networks only: a wall terminal is in the
lab."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from kittylab.adapters.db.tables import Terminal
from kittylab.api import networks, web_auth
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import (
    _canonical_host,
    _floor_feed,
    _fragment,
    _page,
    live_response,
    tile_events,
    zone_camera_snapshot,
)
from kittylab.api.routers.webauthn import (
    CeremonyOut,
    SignInFinish,
    ceremony_out,
    client_address,
    verified_passkey,
)
from kittylab.bootstrap import Container
from kittylab.domain.enums import TerminalStatus
from kittylab.domain.errors import AuthenticationRequired, Conflict, PermissionDenied
from kittylab.domain.networks import OutsideTrustedNetworks
from kittylab.people import passkeys, terminals, web_sessions
from kittylab.web import floor
from kittylab.web import terminal as kiosk_view

router = APIRouter(include_in_schema=False)

Wired = Annotated[Container, Depends(container)]

TERMINAL_COOKIE = "kittylab_terminal"
COOKIE_SECONDS = 400 * 24 * 3600
"""The longest a browser keeps a cookie (Chromium caps it at 400 days); a terminal ends
when an admin revokes it."""
STATUS_POLL_SECONDS = 3
PANEL_POLL_SECONDS = 5


@dataclass(frozen=True)
class Kiosk:
    """A paired terminal, as the request's cookie named it."""

    id: UUID
    zone_id: UUID
    name: str


def _lab_only(request: Request, c: Container) -> None:
    if not networks.is_trusted(request, c.settings.http):
        raise OutsideTrustedNetworks("a wall terminal")


@dataclass(frozen=True)
class Seen:
    """A terminal as its cookie named it, read in a transaction of its own."""

    id: UUID
    status: TerminalStatus
    zone_id: UUID | None
    name: str
    code_expires_at: datetime | None


def _terminal(request: Request, c: Container) -> Seen | None:
    token = request.cookies.get(TERMINAL_COOKIE)
    if not token:
        return None
    with c.database.unit_of_work() as session:
        found = terminals.resolve(session, token, c.clock())
        if found is None:
            return None
        return Seen(found.id, found.status, found.zone_id, found.name, found.code_expires_at)


def _kiosk(request: Request, c: Wired) -> Kiosk:
    """The paired terminal the tablet's cookie names (401 otherwise)."""
    _lab_only(request, c)
    found = _terminal(request, c)
    if found is None or found.status is not TerminalStatus.PAIRED or found.zone_id is None:
        raise AuthenticationRequired("this tablet is not a paired wall terminal: open /terminal")
    return Kiosk(found.id, found.zone_id, found.name)


KioskDep = Annotated[Kiosk, Depends(_kiosk)]


def _person(request: Request, c: Container, kiosk: Kiosk) -> web_sessions.ActiveSession | None:
    """The person tapped in on this terminal: a tap-in's session here (a console sign-in on
    the tablet's browser does not count: the kiosk acts only for whoever tapped)."""
    try:
        # A look, not a use: the page and its reads never keep a tap-in alive.
        active = web_auth.active_session(request, c, touch=False)
    except AuthenticationRequired:
        return None
    return active if active is not None and active.terminal_id == kiosk.id else None


def _set_cookie(response: Response, request: Request, c: Container, token: str) -> None:
    response.set_cookie(
        TERMINAL_COOKIE,
        token,
        max_age=COOKIE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=web_auth.is_secure(request, c.settings.console),
    )


# --- the page ----------------------------------------------------------------------------


@router.get("/terminal", response_class=HTMLResponse)
def terminal_page(request: Request, uow: UnitOfWork, c: Wired) -> Response:
    """The tablet's page: its pairing code while it waits, its zone once paired."""
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    if not networks.is_trusted(request, c.settings.http):
        return _page(
            request,
            "terminal_pair.html",
            {"page": "terminal", "refusal": "Wall terminals work on the lab's own network."},
            None,
        )
    token = request.cookies.get(TERMINAL_COOKIE)
    now = c.clock()
    found = terminals.resolve(uow, token, now) if token else None
    if found is not None and found.status is TerminalStatus.PAIRED and found.zone_id is not None:
        return _kiosk_page(request, uow, c, Kiosk(found.id, found.zone_id, found.name))
    console = c.settings.console
    lifetime = timedelta(minutes=console.terminal_code_minutes)
    try:
        if found is not None and found.status is TerminalStatus.WAITING:
            waiting = terminals.renew_code(uow, found, now=now, lifetime=lifetime)
        else:
            waiting = terminals.start_waiting(
                uow,
                now=now,
                code_lifetime=lifetime,
                most=console.terminals_waiting_max,
                address=client_address(request, c),
            )
    except Conflict as refused:
        return _page(
            request, "terminal_pair.html", {"page": "terminal", "refusal": str(refused)}, None
        )
    response = _page(
        request,
        "terminal_pair.html",
        {
            "page": "terminal",
            "code": terminals.shown_code(waiting.code),
            "expires_at": waiting.code_expires_at,
            "poll_seconds": STATUS_POLL_SECONDS,
        },
        None,
    )
    if waiting.token is not None:
        _set_cookie(response, request, c, waiting.token)
    return response


def _kiosk_page(request: Request, uow: UnitOfWork, c: Container, kiosk: Kiosk) -> Response:
    now = c.clock()
    zone = kiosk_view.read_zone(
        uow,
        kiosk.zone_id,
        now,
        timedelta(seconds=c.settings.presence.ttl_seconds),
        simulated_cameras=c.settings.simulator.camera_base_url,
    )
    person = _person(request, c, kiosk)
    context: dict[str, Any] = {
        "page": "terminal",
        "kiosk": kiosk,
        "zone": zone,
        "panel": kiosk_view.read_panel(uow, kiosk.zone_id, now),
        "person": person,
        "tap_seconds": c.settings.console.terminal_tap_seconds,
        "voice": c.voice is not None and c.settings.voice.stt.backend != "none",
        "voice_max_seconds": c.settings.voice.max_audio_seconds,
        "stale_after": c.settings.devices.offline_after_seconds,
        "panel_poll_seconds": PANEL_POLL_SECONDS,
    }
    if person is not None:
        # The person's CSRF token, for their actions on this page (the page shows no
        # console navigation: a kiosk is not a signed-in console).
        context["csrf_token"] = person.csrf_token
    response = _page(request, "terminal.html", context, None)
    return response


@router.get("/console/terminal/status")
def waiting_status(request: Request, c: Wired) -> Response:
    """A waiting tablet's question, every few seconds: reload once paired (or once its
    code has expired, for a new one); 204 while it waits."""
    _lab_only(request, c)
    found = _terminal(request, c)
    now = c.clock()
    if (
        found is None
        or found.status is not TerminalStatus.WAITING
        or found.code_expires_at is None
        or now >= found.code_expires_at
    ):
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return Response(status_code=204)


# --- the paired kiosk's reads ------------------------------------------------------------


@router.get("/console/terminal/panel", response_class=HTMLResponse)
def panel(request: Request, kiosk: KioskDep, uow: UnitOfWork, c: Wired) -> HTMLResponse:
    """The zone's pending approvals and alerts (the page asks every few seconds)."""
    return _fragment(
        request,
        "_terminal_panel.html",
        panel=kiosk_view.read_panel(uow, kiosk.zone_id, c.clock()),
    )


@router.get("/console/terminal/snapshot")
async def snapshot(kiosk: KioskDep, c: Wired) -> Response:
    """The zone camera's frame (404 without a camera; 503 when it does not answer)."""
    return await zone_camera_snapshot(c, kiosk.zone_id)


@router.get("/console/terminal/events")
async def events(request: Request, kiosk: KioskDep, c: Wired) -> StreamingResponse:
    """The zone's tiles and its "present:" line as they change (the floor's stream, for
    one zone, without actions); ``signed-out`` once the terminal is revoked."""
    feed = _floor_feed(request.app, c)
    ttl = timedelta(seconds=c.settings.presence.ttl_seconds)

    def read() -> dict[UUID, floor.Tile]:
        with c.database.unit_of_work() as session:
            zone = kiosk_view.read_zone(
                session,
                kiosk.zone_id,
                c.clock(),
                timedelta(0),
                simulated_cameras=c.settings.simulator.camera_base_url,
            )
        return {tile.id: tile for tile in zone.tiles} if zone is not None else {}

    def read_present() -> dict[UUID, list[str]]:
        with c.database.unit_of_work() as session:
            return floor.present_names(session, c.clock(), ttl, [kiosk.zone_id])

    def still_paired() -> bool:
        found = _terminal(request, c)
        return found is not None and found.status is TerminalStatus.PAIRED

    stream = tile_events(feed, read, read_present, can_act=False, zones=frozenset({kiosk.zone_id}))
    return live_response(request, c, stream, still_allowed=still_paired)


# --- a person at the terminal ------------------------------------------------------------


@router.post("/console/terminal/tap/options", response_model=CeremonyOut)
def tap_options(kiosk: KioskDep, uow: UnitOfWork, c: Wired) -> CeremonyOut:
    """Start a tap: any security key (passkey) enrolled here may answer."""
    rp = web_auth.relying_party(c.settings.console)
    return ceremony_out(passkeys.authentication_options(uow, rp, c.clock()))


@router.post("/console/terminal/tap")
def tap(
    body: SignInFinish, request: Request, kiosk: KioskDep, uow: UnitOfWork, c: Wired
) -> JSONResponse:
    """Verify the key's answer; its person is checked in to the terminal's zone and holds
    the tablet's session (401: the key did not verify or is not enrolled here; 409: a
    safety override says the person is not in the zone)."""
    now = c.clock()
    passkey = verified_passkey(body, request, uow, c)
    terminal = uow.get(Terminal, kiosk.id)
    if terminal is None:
        raise PermissionDenied("this tablet is not a paired wall terminal")
    tapped = terminals.tap_in(
        uow,
        terminal,
        passkey,
        limits=web_auth.limits(c.settings.console),
        now=now,
        user_agent=request.headers.get("user-agent", ""),
        address=client_address(request, c),
    )
    response = JSONResponse({"displayName": tapped.user.display_name})
    web_auth.set_session_cookie(response, request, c, tapped.session)
    return response


def _tapped_here(request: Request, c: Container, kiosk: Kiosk) -> web_sessions.ActiveSession:
    person = _person(request, c, kiosk)
    if person is None:
        raise PermissionDenied("tap your key on this terminal first")
    return person


@router.post("/console/terminal/check-out")
def check_out(request: Request, _: Caller, kiosk: KioskDep, uow: UnitOfWork, c: Wired) -> Response:
    """The tapped-in person leaves the zone: a terminal check-out, and their session on
    the tablet ends."""
    person = _tapped_here(request, c, kiosk)
    terminal = uow.get(Terminal, kiosk.id)
    assert terminal is not None  # the kiosk dependency found it
    terminals.check_out(uow, terminal, person, c.clock())
    response = Response(status_code=204, headers={"HX-Refresh": "true"})
    web_auth.clear_session_cookie(response, request, c)
    return response


@router.post("/console/terminal/tap-out")
def tap_out(request: Request, _: Caller, kiosk: KioskDep, uow: UnitOfWork, c: Wired) -> Response:
    """The tapped-in person is done at the tablet (still checked in)."""
    person = _tapped_here(request, c, kiosk)
    terminals.tap_out(uow, person, c.clock())
    response = Response(status_code=204, headers={"HX-Refresh": "true"})
    web_auth.clear_session_cookie(response, request, c)
    return response
