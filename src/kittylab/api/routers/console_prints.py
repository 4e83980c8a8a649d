"""The console's prints page (issue 17, item 4): ``/prints``, its actions under
``/console/prints/…`` and its live stream at ``/console/prints/events``.

One card per printer: its live state (progress bar, temperatures, time left, the file and
its preview), the job on it with pause, resume and cancel, its queue, its history with
outcomes and the monitor events (with their snapshots), and "bed clear" when the queue
waits for it. Queueing a print is the API's own two calls, made by the page
(``PUT /api/fabrication/files/{name}``, then ``POST /api/fabrication/jobs``), so the
upload's size limit, quotas and the G-code policy are exactly the API's.

Every action goes through the same use case and role check as the API: pause and resume
are the device commands ``print_pause`` / ``print_resume`` for the job
(``devices.requests.request_command``: an engineer pauses and cancels their own jobs,
only operators, safety and admins resume — ``domain/actuation.py``); cancel and bed clear
are ``fabrication.jobs``' ``cancel_job`` and ``confirm_bed_clear``. From outside the lab's
trusted networks the page shows no action, and the server refuses them anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from kittylab import bootstrap
from kittylab.adapters.db.tables import FabricationJob
from kittylab.api import networks
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers import get_or_404
from kittylab.api.routers.console import (
    Outcome,
    _canonical_host,
    _floor_feed,
    _fragment,
    _page,
    _sse,
    _viewer,
    live_response,
    templates,
)
from kittylab.api.routers.fabrication.callers import PrintCaller
from kittylab.bootstrap import Container
from kittylab.devices.requests import request_command
from kittylab.domain.actuation import ACTUATING_ROLES, PRINTING_ROLES
from kittylab.domain.errors import NotFound
from kittylab.domain.principal import Principal
from kittylab.fabrication import jobs as fabrication
from kittylab.web import prints
from kittylab.web.live import DeviceUpdate, PresenceUpdate

router = APIRouter(include_in_schema=False)


@dataclasses.dataclass(frozen=True)
class Powers:
    """What the viewer may do on this page (the server checks again on every action)."""

    user_id: UUID
    queue: bool
    """Queue prints, confirm a bed clear; pause and cancel their own jobs."""
    operate: bool
    """Pause, resume and cancel anyone's jobs."""

    def may_stop(self, job: prints.JobView) -> bool:
        return self.operate or (self.queue and job.requested_by == self.user_id)


def _powers(principal: Principal) -> Powers:
    inside = not principal.remote
    return Powers(
        principal.user_id,
        queue=inside and principal.has_any(*PRINTING_ROLES),
        operate=inside and principal.has_any(*ACTUATING_ROLES),
    )


def _previews(app: FastAPI, c: Container) -> prints.Previews:
    found: prints.Previews | None = getattr(app.state, "print_previews", None)
    if found is None:
        found = prints.Previews(c.artifacts)
        app.state.print_previews = found
    return found


@dataclasses.dataclass(frozen=True)
class Snapshot:
    printers: list[prints.PrinterView]
    with_preview: frozenset[UUID]


def _read(c: Container, previews: prints.Previews, device_id: UUID | None = None) -> Snapshot:
    with c.database.unit_of_work() as session:
        printers = prints.read_printers(session, device_id)
        shown = [
            job.id
            for p in printers
            for job in ([p.current] if p.current else []) + p.queue + p.history
        ]
        with_preview = frozenset(j for j in shown if previews.of(session, j) is not None)
    return Snapshot(printers, with_preview)


def _context(snapshot: Snapshot, powers: Powers, now: datetime) -> dict[str, Any]:
    return {"powers": powers, "now": now, "with_preview": snapshot.with_preview}


# --- the page ----------------------------------------------------------------------------


@router.get("/prints", response_class=HTMLResponse)
def prints_page(
    request: Request, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    remote = not networks.is_trusted(request, c.settings.http)
    principal = dataclasses.replace(viewer.principal, remote=remote)
    powers = _powers(principal)
    snapshot = _read(c, _previews(request.app, c))
    return _page(
        request,
        "prints.html",
        {
            "page": "prints",
            "printers": snapshot.printers,
            "remote": remote,
            "cad_choices": prints.cad_choices(uow) if powers.queue else [],
            "stale_after": c.settings.devices.offline_after_seconds,
            **_context(snapshot, powers, c.clock()),
        },
        viewer,
    )


@router.get("/console/prints/jobs/{job_id}/preview")
def job_preview(
    job_id: UUID, request: Request, _: Caller, c: Annotated[Container, Depends(container)]
) -> Response:
    """The job's preview: the G-code's embedded thumbnail, else its CAD part's preview
    PNG (404 when it has neither)."""
    previews = _previews(request.app, c)
    with c.database.unit_of_work() as session:
        found = previews.of(session, job_id)
    if found is None:
        raise NotFound("preview of fabrication job", job_id)
    return Response(
        found.data,
        media_type=found.content_type,
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# --- actions -----------------------------------------------------------------------------


def _job_command(
    intent: str, job_id: UUID, request: Request, caller: Principal, uow: UnitOfWork, c: Container
) -> HTMLResponse:
    job = get_or_404(uow, FabricationJob, job_id, "fabrication job")
    requested = request_command(
        uow,
        jobs=c.jobs,
        bus=c.bus,
        device_id=job.device_id,
        intent=intent,
        payload={},
        requester=caller,
        now=c.clock(),
        for_job=job.id,
        safety_context=bootstrap.safety_context(c.settings),
    )
    if requested.held is not None:
        missing = "; ".join(requested.held.missing) or "nothing"
        outcome = Outcome(
            "held",
            "Held for approval:",
            f"still missing {missing}. Nothing was sent.",
            requested.command.id,
            requested.held.event.id,
        )
    else:
        outcome = Outcome(
            "pending", "Sent:", "waiting for the printer…", requested.command.id, poll=True
        )
    return _fragment(request, "_command.html", outcome=outcome)


@router.post("/console/prints/jobs/{job_id}/pause", response_class=HTMLResponse)
def pause_job(
    job_id: UUID,
    request: Request,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``print_pause`` for the job's printer: operators, or the job's own engineer."""
    return _job_command("print_pause", job_id, request, caller, uow, c)


@router.post("/console/prints/jobs/{job_id}/resume", response_class=HTMLResponse)
def resume_job(
    job_id: UUID,
    request: Request,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``print_resume`` (an actuation: operators, safety and admins)."""
    return _job_command("print_resume", job_id, request, caller, uow, c)


@router.post("/console/prints/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel_job(
    job_id: UUID,
    request: Request,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/fabrication/jobs/{id}/cancel``."""
    job = fabrication.cancel_job(uow, job_id, caller, c.clock(), jobs=c.jobs)
    if job.status.value == "aborted":
        outcome = Outcome("ok", "Cancelled.", "")
    else:
        outcome = Outcome("pending", "Cancel sent:", "the job ends when the printer confirms.")
    return _fragment(request, "_command.html", outcome=outcome)


@router.post("/console/prints/printers/{device_id}/bed-clear", response_class=HTMLResponse)
def bed_clear(
    device_id: UUID,
    request: Request,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/fabrication/printers/{id}/bed-clear``."""
    covered = fabrication.confirm_bed_clear(uow, device_id, caller.user_id, c.clock(), jobs=c.jobs)
    jobs = "job" if covered == 1 else "jobs"
    outcome = Outcome(
        "ok", "Bed clear:", f"confirmed for {covered} finished {jobs}; the queue may move."
    )
    return _fragment(request, "_command.html", outcome=outcome)


def _newest(
    read: list[prints.PrinterView], shown: dict[UUID, prints.PrinterView]
) -> dict[UUID, prints.PrinterView]:
    """The printers as just read, each keeping the state on screen when that is newer (the
    bus brings a report before it is stored): a bar never jumps back."""
    fresh = {}
    for printer in read:
        known = shown.get(printer.id)
        if (
            known is not None
            and known.reported_at is not None
            and (printer.reported_at is None or known.reported_at > printer.reported_at)
        ):
            printer = dataclasses.replace(printer, state=known.state, reported_at=known.reported_at)
        fresh[printer.id] = printer
    return fresh


# --- live --------------------------------------------------------------------------------


@router.get("/console/prints/events")
async def prints_events(
    request: Request, caller: Caller, c: Annotated[Container, Depends(container)]
) -> StreamingResponse:
    """Server-Sent Events: ``printer-<id>`` carries a printer's live part (state, progress,
    temperatures, the job on it) whenever the printer reports (the floor's feed);
    ``jobs-<id>`` its queue and history when they change (re-read every
    ``KITTYLAB_CONSOLE__LIVE_REFRESH_SECONDS``). Everything is sent first, so a
    reconnecting page catches up; ``signed-out`` when the session ends."""
    feed = _floor_feed(request.app, c)
    previews = _previews(request.app, c)
    live = templates.get_template("_print_live.html")
    jobs_part = templates.get_template("_print_jobs.html")
    powers = _powers(caller)
    refresh = c.settings.console.live_refresh_seconds

    def render(printer: prints.PrinterView, snapshot: Snapshot) -> tuple[str, str]:
        context = {"printer": printer, **_context(snapshot, powers, c.clock())}
        return live.render(**context), jobs_part.render(**context)

    async def printers_as_they_change() -> AsyncGenerator[str | None, None]:
        with feed.subscribe() as subscription:
            snapshot = await asyncio.to_thread(_read, c, previews)
            printers = {p.id: p for p in snapshot.printers}
            sent: dict[str, str] = {}
            read_at = time.monotonic()
            force = True
            while True:
                if force or time.monotonic() - read_at >= refresh:
                    if not force:
                        snapshot = await asyncio.to_thread(_read, c, previews)
                        printers = _newest(snapshot.printers, printers)
                    read_at = time.monotonic()
                    for printer in printers.values():
                        for name, html in zip(
                            (f"printer-{printer.id}", f"jobs-{printer.id}"),
                            render(printer, snapshot),
                            strict=True,
                        ):
                            if force or sent.get(name) != html:
                                sent[name] = html
                                yield _sse(name, html)
                    force = False
                try:
                    update: DeviceUpdate | PresenceUpdate | None = await asyncio.wait_for(
                        subscription.queue.get(), refresh
                    )
                except TimeoutError:
                    update = None
                if subscription.lagged:
                    subscription.lagged = False
                    force = True
                    snapshot = await asyncio.to_thread(_read, c, previews)
                    printers = _newest(snapshot.printers, printers)
                elif isinstance(update, DeviceUpdate) and update.device_id in printers:
                    known = printers[update.device_id]
                    printer = dataclasses.replace(
                        known,
                        online_state=update.online_state,
                        state=update.state if update.state is not None else known.state,
                        reported_at=update.reported_at or known.reported_at,
                    )
                    printers[printer.id] = printer
                    name = f"printer-{printer.id}"
                    html = render(printer, snapshot)[0]
                    if sent.get(name) != html:
                        sent[name] = html
                        yield _sse(name, html)
                yield None

    return live_response(request, c, printers_as_they_change())
