"""What a tap-in on a wall terminal may do (issue 18): the terminal's own actions, for its
own zone, and nothing else.

A person who taps their key on a wall terminal holds a session on a tablet anyone can walk
up to for the next minute or so. That session acts as them, with their roles, but only
through what the terminal offers: its zone's stop, push-to-talk (and hearing the reply),
checking out, tapping out. Anything else — the floor, another zone's stop, the safety
desk, an approval, the API at large — needs a console sign-in or a token. Routes are named
by method and path template, as the API declares them, so a path cannot widen the list;
the one zone-bound route is checked against the terminal's zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

Route = tuple[str, str]

TAP_IN_ROUTES: frozenset[Route] = frozenset(
    {
        ("GET", "/api/me"),
        ("POST", "/console/zones/{zone_id}/stop"),
        ("POST", "/api/voice/turn"),
        ("GET", "/api/voice/replies/{reply_id}"),
        ("POST", "/console/terminal/check-out"),
        ("POST", "/console/terminal/tap-out"),
    }
)
ZONE_BOUND: frozenset[Route] = frozenset({("POST", "/console/zones/{zone_id}/stop")})


def tap_in_refusal(
    method: str,
    route: str | None,
    path_params: Mapping[str, str],
    terminal_zone_id: UUID | None,
) -> str | None:
    """Why a terminal's tap-in may not call ``method route``, or None when it may."""
    verb = "GET" if method.upper() == "HEAD" else method.upper()
    if route is None or (verb, route) not in TAP_IN_ROUTES:
        return (
            "a tap-in on a wall terminal acts only through the terminal (its zone's stop, "
            "push-to-talk, check-out); sign in to the console for anything else"
        )
    if (verb, route) in ZONE_BOUND and path_params.get("zone_id") != str(terminal_zone_id):
        return "a wall terminal stops its own zone only"
    return None
