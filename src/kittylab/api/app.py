"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.routing import Match

from kittylab import __version__
from kittylab.api import problems
from kittylab.api.body_limit import BodyLimit, BodyTooLarge, too_large
from kittylab.api.routers import (
    audit,
    cad,
    commands,
    console,
    console_operations,
    console_prints,
    console_projects,
    console_safety,
    console_studio,
    console_talk,
    console_terminals,
    conversations,
    devices,
    fabrication,
    health,
    keys,
    lab,
    locks,
    notifications,
    policies,
    presence,
    projects,
    query,
    role_grants,
    routing,
    safety,
    telemetry,
    terminals,
    users,
    voice,
    webauthn,
    zones,
)
from kittylab.bootstrap import Container
from kittylab.fabrication.uploads import UploadQuotaExceeded
from kittylab.observability import HTTP_LATENCY, HTTP_REQUESTS, request_id_var
from kittylab.records.ports import ArtifactStoreFull

log = logging.getLogger("kittylab.http")

# One router per URL prefix (each module's docstring says more), in the order they are
# tried; no two of them can match the same request.
ROUTERS = (
    health,  # /healthz /readyz /metrics
    users,  # /api/me /api/users (and their tokens)
    keys,  # /api/keys /api/users/{id}/keys
    role_grants,  # /api/role-grants
    zones,  # /api/zones
    devices,  # /api/devices /api/device/{id}/command
    locks,  # /api/locks /api/devices/{id}/locks
    commands,  # /api/commands
    telemetry,  # /api/telemetry
    policies,  # /api/policies
    presence,  # /api/presence
    lab,  # /api/lab
    conversations,  # /api/conversations
    projects,  # /api/projects
    query,  # /api/query
    voice,  # /api/voice
    routing,  # /api/routing
    fabrication,  # /api/fabrication (a package: files, jobs, printers, snapshots, monitor events)
    cad,  # /api/cad
    safety,  # /api/safety
    notifications,  # /api/notifications
    audit,  # /api/audit
    terminals,  # /api/terminals (issue 18: wall terminals)
    webauthn,  # /api/webauthn (issue 17: the console's passkey sign-in)
    console,  # / /sign-in /enrol /sessions /docs, and /console (issue 17: the web console)
    console_prints,  # /prints and /console/prints (issue 17: the console's prints)
    console_safety,  # /safety and /console/safety (issue 17: the console's safety desk)
    console_talk,  # /talk and /console/talk (issue 17: the console's conversation)
    console_studio,  # /studio and /console/studio (issue 18: the CAD studio)
    console_operations,  # /operations and /console/operations (issue 18: the operations view)
    console_projects,  # /projects and /console/projects (issue 18: the projects pages)
    console_terminals,  # /terminal /terminals and /console/terminal(s) (issue 18: wall terminals)
)


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="KittyLab",
        version=__version__,
        description="Control plane of a fabrication lab. Every /api route needs "
        "`Authorization: Bearer <token>` (or the web console's session); errors are "
        "RFC 9457 problem details.",
        # The interactive docs (/docs) are the console's, served from the package, not
        # from a CDN: a lab network is often offline (api/routers/console.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    console.install(app, container)  # issue 17: the web console's files and live feed
    problems.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    _install_body_limit(app, container)
    _install_storage_problems(app)
    _install_middleware(app)
    return app


UPLOAD_PATH_PREFIX = "/api/fabrication/files/"


def _install_body_limit(app: FastAPI, container: Container) -> None:
    """Every body is held to its route's limit (``kittylab.api.body_limit``), inside the
    observing middleware so a 413 is counted, logged and carries the request id."""

    def limit_for(path: str) -> int:
        # File uploads are the one route allowed large bodies (streamed to a file).
        if path.startswith(UPLOAD_PATH_PREFIX):
            return container.settings.fabrication.max_upload_bytes
        if path == voice.TURN_PATH:
            # Audio, raw or in a multipart form (a few hundred bytes of form around it).
            return container.settings.voice.max_audio_bytes + 16 * 1024
        return container.settings.http.max_body_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        return too_large(request, exc.limit)


def _install_storage_problems(app: FastAPI) -> None:
    """The problems of a full upload quota (413) and of a store out of room (507)."""

    @app.exception_handler(UploadQuotaExceeded)
    async def _over_quota(request: Request, exc: UploadQuotaExceeded) -> Response:
        return problems.problem(
            request,
            413,
            "upload-quota-exceeded",
            "Upload quota exceeded",
            str(exc),
            field=exc.field,
        )

    @app.exception_handler(ArtifactStoreFull)
    async def _store_full(request: Request, exc: ArtifactStoreFull) -> Response:
        log.error("artifact store full: %s", exc)  # the path and numbers, for operators only
        return problems.problem(
            request,
            507,
            "insufficient-storage",
            "Insufficient storage",
            "the artifact store has no room left for this; an operator must free space",
        )


def _route_template(request: Request) -> str:
    """The matched route's path template, so metrics do not explode per id."""
    matched = request.scope.get("route")
    if matched is not None:
        return str(getattr(matched, "path", "unmatched"))
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get("x-request-id", "")
        request_id = (
            incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        )
        request.state.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception:
                # Handled here rather than by Starlette's outermost error middleware, so
                # the 500 still carries the request id, is counted and is logged with it.
                log.exception("unexpected error")
                response = problems.internal_error(request)
            route = _route_template(request)
            # Bounded label values: a made-up method must not mint new metric series.
            method = request.method if request.method in KNOWN_METHODS else "other"
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
            HTTP_LATENCY.labels(route, method).observe(elapsed)
            response.headers["X-Request-ID"] = request_id
            duration_ms = round(elapsed * 1000, 2)
            log.info(
                "%s %s -> %s in %.1f ms",
                request.method,
                route,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
            return response
        finally:
            request_id_var.reset(token)
