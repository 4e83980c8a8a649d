"""The console's projects (issue 18, item 4): the pages ``/projects`` and
``/projects/{id}``, and the list's fragment at ``/console/projects/list``.

``/projects`` lists the newest projects with their summary line and counts;
``/projects/{id}`` shows one project's conversations (each a link to ``/talk/{id}`` for
those who may read it), its CAD jobs and artifacts (links to ``/studio/jobs/{id}``), its
print jobs and how they ended, and the summary of what was made and how it printed. The
membership and the summary are ``GET /api/projects``'s own use case
(``conversation.projects.view``), so the pages say what the API says.

Everyone signed in reads projects, as the API lets them; a conversation's words stay its
participants' (``web/projects.py``). The pages change nothing: changing a project is the
API's, so from outside the lab's trusted networks they read the same.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from kittylab.api import networks
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import _canonical_host, _fragment, _page, _viewer
from kittylab.bootstrap import Container
from kittylab.web import projects

router = APIRouter(include_in_schema=False)


@router.get("/projects", response_class=HTMLResponse)
def projects_page(
    request: Request, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    return _page(
        request,
        "projects.html",
        {
            "page": "projects",
            "remote": not networks.is_trusted(request, c.settings.http),
            "projects": projects.list_projects(uow),
            "limit": projects.LIST_LIMIT,
            "now": c.clock(),
        },
        viewer,
    )


@router.get("/console/projects/list", response_class=HTMLResponse)
def projects_list(request: Request, _: Caller, uow: UnitOfWork) -> HTMLResponse:
    """The projects' list alone (read again by the page's "read again")."""
    return _fragment(
        request,
        "_projects_list.html",
        projects=projects.list_projects(uow),
        limit=projects.LIST_LIMIT,
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(
    project_id: UUID,
    request: Request,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    return _page(
        request,
        "project.html",
        {
            "page": "projects",
            "remote": not networks.is_trusted(request, c.settings.http),
            "project": projects.read_project(uow, project_id, viewer.principal),
            "now": c.clock(),
        },
        viewer,
    )
