"""What every page of the safety desk shares: the viewer as the rules see this request
(remote outside the trusted networks), the safety context, and the page frame with the
desk's tabs and what waits on each."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from kittylab import bootstrap
from kittylab.api import networks
from kittylab.api.routers.console import _page, templates
from kittylab.bootstrap import Container
from kittylab.domain.principal import Principal
from kittylab.people.web_sessions import ActiveSession
from kittylab.safety import workflow
from kittylab.web import desk

REFRESH_SECONDS = 5
"""How often a desk page re-reads what it shows (htmx polling), and so when it is stale."""


def context(c: Container) -> workflow.SafetyContext:
    return bootstrap.safety_context(c.settings)


def viewing(request: Request, viewer: Principal, c: Container) -> Principal:
    """The viewer as the rules see this request: remote outside the trusted networks."""
    if networks.is_trusted(request, c.settings.http):
        return viewer
    return Principal(viewer.user_id, viewer.username, viewer.roles, remote=True)


def page(
    request: Request,
    template: str,
    tab: str,
    context: dict[str, Any],
    viewer: ActiveSession,
    principal: Principal,
    session: Session,
    c: Container,
) -> HTMLResponse:
    """A desk page: ``template`` with the desk's tabs (``tab`` is this one's)."""
    return _page(
        request,
        template,
        {
            "page": "safety",
            "tab": tab,
            "remote": principal.remote,
            "waiting": desk.waiting(session, principal),
            "sees_all": principal.reads_all_records,
            "now": c.clock(),
            "refresh_seconds": REFRESH_SECONDS,
            **context,
        },
        viewer,
    )


def fragment(
    request: Request, template: str, context: dict[str, Any], c: Container
) -> HTMLResponse:
    """A board of the desk on its own (the page re-reads it every ``REFRESH_SECONDS``)."""
    return templates.TemplateResponse(
        request, template, {**context, "now": c.clock(), "refresh_seconds": REFRESH_SECONDS}
    )
