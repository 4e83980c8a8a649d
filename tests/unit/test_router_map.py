"""Every route lives in the router its URL names (``kittylab.api.routers``), so a reader
finds ``GET /api/cad/jobs`` in ``routers/cad.py``; and no two routes can match one
request, so the order the routers are included in never decides which one answers."""

from __future__ import annotations

import itertools
from typing import Any, cast

import pytest
from fastapi.routing import iter_route_contexts

from kittylab.api.app import create_app
from kittylab.bootstrap import Container

ROUTERS = "kittylab.api.routers."

# The router of each URL prefix: the first segment after /api (under /api/fabrication,
# the second). A new prefix gets a router of its own and a line here.
ROUTER_OF_PREFIX = {
    "me": "users",
    "users": "users",
    "keys": "keys",
    "role-grants": "role_grants",
    "zones": "zones",
    "devices": "devices",
    "device": "devices",
    "locks": "locks",
    "commands": "commands",
    "telemetry": "telemetry",
    "policies": "policies",
    "presence": "presence",
    "lab": "lab",
    "conversations": "conversations",
    "projects": "projects",
    "query": "query",
    "voice": "voice",
    "routing": "routing",
    "cad": "cad",
    "safety": "safety",
    "notifications": "notifications",
    "audit": "audit",
    "webauthn": "webauthn",
    "terminals": "terminals",
    "fabrication/files": "fabrication.files",
    "fabrication/jobs": "fabrication.jobs",
    "fabrication/printers": "fabrication.printers",
    "fabrication/monitor-events": "fabrication.monitor_events",
}
# Collections under another resource's id that live with their own resource (each
# router's docstring says why): /api/devices/{id}/locks, /api/users/{id}/keys, a print
# job's snapshots and monitor events. A camera's own pictures
# (/api/devices/{id}/snapshots) are the device's, in its router.
NESTED_RESOURCES = {
    "locks": "locks",
    "keys": "keys",
    "snapshots": "fabrication.snapshots",
    "monitor-events": "fabrication.monitor_events",
}
OWN_COLLECTIONS = {("devices", "snapshots")}
UNAUTHENTICATED = {"/healthz": "health", "/readyz": "health", "/metrics": "health"}
# The web console's pages and fragments (issue 17), outside /api: a section's page and its
# fragments under /console/<section>/ live in that section's router, the rest in console.
CONSOLE_PAGES = {
    "/",
    "/sign-in",
    "/enrol",
    "/sessions",
    "/docs",
    "/offline",
    "/manifest.webmanifest",
    "/sw.js",
}
CONSOLE_SECTIONS = {
    "prints": "console_prints",
    "safety": "console_safety",
    "talk": "console_talk",
    "studio": "console_studio",
    "operations": "console_operations",
    "projects": "console_projects",
    "terminal": "console_terminals",
    "terminals": "console_terminals",
}


def _api_routes() -> list[tuple[str, frozenset[str], str]]:
    app = create_app(cast(Container, object()))
    routes = []
    for route in iter_route_contexts(app.routes):
        endpoint: Any = route.endpoint
        if route.path is None or not route.methods or endpoint is None:
            continue  # the docs' static files
        if route.path == "/openapi.json":
            continue  # the application's own
        routes.append((route.path, frozenset(route.methods), str(endpoint.__module__)))
    return routes


def _expected_router(path: str) -> str:
    if path in UNAUTHENTICATED:
        return UNAUTHENTICATED[path]
    segments = path.strip("/").split("/")
    if segments[0] in CONSOLE_SECTIONS:
        return CONSOLE_SECTIONS[segments[0]]
    if segments[0] == "console" and len(segments) > 1 and segments[1] in CONSOLE_SECTIONS:
        return CONSOLE_SECTIONS[segments[1]]
    if path in CONSOLE_PAGES or path.startswith("/console/"):
        return "console"
    segments = path.strip("/").split("/")
    assert segments[0] == "api", path
    after_an_id = [
        (parent, s)
        for parent, prev, s in zip(segments, segments[1:], segments[2:], strict=False)
        if prev.startswith("{")
    ]
    for parent, segment in after_an_id:
        if segment in NESTED_RESOURCES and (parent, segment) not in OWN_COLLECTIONS:
            return NESTED_RESOURCES[segment]
    prefix = "/".join(segments[1:3]) if segments[1] == "fabrication" else segments[1]
    assert prefix in ROUTER_OF_PREFIX, f"{path}: no router named for {prefix!r} yet"
    return ROUTER_OF_PREFIX[prefix]


ROUTES = _api_routes()


@pytest.mark.parametrize(
    ("path", "methods", "module"), ROUTES, ids=[f"{'/'.join(sorted(m))} {p}" for p, m, _ in ROUTES]
)
def test_every_route_lives_in_the_router_its_url_names(
    path: str, methods: frozenset[str], module: str
) -> None:
    expected = ROUTERS + _expected_router(path)
    # A console section may be a package, a module per tab (the safety desk).
    in_section = _expected_router(path) in CONSOLE_SECTIONS.values() and module.startswith(
        expected + "."
    )
    assert module == expected or in_section, f"{sorted(methods)} {path}"


def _could_match_the_same_url(a: str, b: str) -> bool:
    left, right = a.strip("/").split("/"), b.strip("/").split("/")
    return len(left) == len(right) and all(
        x == y or x.startswith("{") or y.startswith("{") for x, y in zip(left, right, strict=True)
    )


def test_no_two_routes_can_answer_the_same_request() -> None:
    clashes = [
        (a[0], b[0], sorted(a[1] & b[1]))
        for a, b in itertools.combinations(ROUTES, 2)
        if a[1] & b[1] and _could_match_the_same_url(a[0], b[0])
    ]
    assert clashes == []
