"""Machine tokens (issue 13): what a detector's or an integration's token may call.

A person's token carries no scope and reaches every route its owner's roles allow. A
machine token carries one or more scopes and reaches only the routes listed for them here
(plus ``GET /api/me``, so the integration can check its token), and on those only what its
owner's roles allow: a scope narrows a token, it never grants a role. Everything else is a
403 naming the token's scopes.

Routes are named by method and path template, as the API declares them, so a path
parameter can never widen a scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from kittylab.domain.errors import ValidationFailed


class MachineScope(StrEnum):
    MONITOR = "monitor"
    """A print monitor or failure detector: reads print jobs, stores a snapshot of one,
    reports what it saw (a failure pauses the print)."""
    TELEMETRY = "telemetry"
    """An integration bridge: writes telemetry batches, device ``state`` included (which
    needs an admin owner, as for any token)."""


Route = tuple[str, str]

EVERY_SCOPE: frozenset[Route] = frozenset({("GET", "/api/me")})

SCOPE_ROUTES: dict[MachineScope, frozenset[Route]] = {
    MachineScope.MONITOR: frozenset(
        {
            ("GET", "/api/fabrication/jobs"),
            ("GET", "/api/fabrication/jobs/{job_id}"),
            ("PUT", "/api/fabrication/jobs/{job_id}/snapshots/{name}"),
            ("POST", "/api/fabrication/jobs/{job_id}/monitor-events"),
        }
    ),
    MachineScope.TELEMETRY: frozenset({("POST", "/api/telemetry")}),
}


def parse_scopes(values: Iterable[str], field: str = "scopes") -> tuple[MachineScope, ...]:
    """Known scopes, sorted and without repeats; ``ValidationFailed`` naming ``field``
    for an unknown one."""
    parsed: set[MachineScope] = set()
    for value in values:
        try:
            parsed.add(MachineScope(value))
        except ValueError:
            known = ", ".join(s.value for s in MachineScope)
            raise ValidationFailed(field, f"unknown scope {value!r} (known: {known})") from None
    return tuple(sorted(parsed))


def scope_refusal(scopes: Iterable[str], method: str, route: str | None) -> str | None:
    """Why a token with ``scopes`` may not call ``method route`` (a path template), or None
    when it may. No scopes: a person's token, refused nothing here. An unknown stored scope
    grants nothing (fail closed)."""
    held = sorted(set(scopes))
    if not held:
        return None
    verb = "GET" if method.upper() == "HEAD" else method.upper()
    allowed = set(EVERY_SCOPE)
    for name in held:
        try:
            allowed |= SCOPE_ROUTES[MachineScope(name)]
        except ValueError:
            continue
    if route is not None and (verb, route) in allowed:
        return None
    names = ", ".join(held)
    return (
        f"this is a machine token scoped to {names}: it cannot call {verb} {route or 'this route'}"
        " (a person's token is needed)"
    )
