"""``/api/projects`` (issue 16): a piece of work — its conversations, CAD jobs, artifacts
and print jobs — with a summary of what was made and how it printed
(``conversation.projects``). Every signed-in person reads projects; the creator or an
admin changes and deletes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status
from pydantic import Field
from sqlalchemy import select

from kittylab.adapters.db.tables import Project
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.schemas import CamelModel, StrictInput
from kittylab.bootstrap import Container
from kittylab.conversation import projects
from kittylab.conversation.projects import Members, ProjectView

router = APIRouter(prefix="/api", tags=["projects"])


def _ids(what: str) -> Any:
    return Field(default_factory=list, max_length=500, description=f"Add these {what}.")


class ProjectCreate(StrictInput):
    name: str = Field(max_length=projects.NAME_MAX)
    description: str | None = Field(None, max_length=projects.DESCRIPTION_MAX)
    conversation_ids: list[UUID] = _ids("conversations")
    cad_job_ids: list[UUID] = _ids("CAD jobs")
    artifact_ids: list[UUID] = _ids("CAD artifacts")
    print_job_ids: list[UUID] = _ids("print jobs")

    def members(self) -> Members:
        return Members(
            self.conversation_ids, self.cad_job_ids, self.artifact_ids, self.print_job_ids
        )


class ProjectPatch(ProjectCreate):
    """Every field optional; the id lists add members (removing one: delete and re-add
    the project, or leave it — links go by themselves when their item is deleted).
    ``description: null`` clears the description."""

    name: str | None = Field(None, max_length=projects.NAME_MAX)  # type: ignore[assignment]


class ArtifactAdd(StrictInput):
    artifact_id: UUID | None = Field(None, description="A CAD artifact's id.")
    key: str | None = Field(
        None, max_length=512, description="Or any stored artifact's key (an upload, a snapshot)."
    )


class SummaryOut(CamelModel):
    conversations: int
    cad_jobs: dict[str, int]
    artifacts: dict[str, int]
    stored_artifacts: int
    print_jobs: dict[str, int]
    text: str


class ProjectOut(CamelModel):
    id: UUID
    name: str
    description: str | None
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    conversation_ids: list[UUID]
    cad_job_ids: list[UUID]
    artifact_ids: list[UUID]
    artifact_keys: list[str]
    print_job_ids: list[UUID]
    summary: SummaryOut


def _out(found: ProjectView) -> ProjectOut:
    p = found.project
    assert found.summary is not None
    return ProjectOut(
        id=p.id,
        name=p.name,
        description=p.description,
        created_by=p.created_by,
        created_at=p.created_at,
        updated_at=p.updated_at,
        conversation_ids=found.conversation_ids,
        cad_job_ids=found.cad_job_ids,
        artifact_ids=found.artifact_ids,
        artifact_keys=found.artifact_keys,
        print_job_ids=found.print_job_ids,
        summary=SummaryOut.model_validate(found.summary),
    )


@router.get("/projects", response_model=Page[ProjectOut])
def list_projects(
    caller: Caller, uow: UnitOfWork, limit: Limit = 50, cursor: CursorParam = None
) -> Page[ProjectOut]:
    """Every project, newest first, each with its members and summary."""

    def to_item(row: Any) -> ProjectOut:
        return _out(projects.view(uow, row))

    return paginate(uow, select(Project), Project.id, cursor, min(limit, 100), to_item)


@router.post("/projects", response_model=ProjectOut, status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ProjectOut:
    row = projects.create(
        uow,
        caller,
        name=body.name,
        description=body.description,
        members=body.members(),
        now=c.clock(),
    )
    return _out(projects.view(uow, row))


@router.get("/projects/{project_id}", response_model=ProjectOut)
def get_project(project_id: UUID, caller: Caller, uow: UnitOfWork) -> ProjectOut:
    return _out(projects.view(uow, projects.get(uow, project_id)))


@router.patch("/projects/{project_id}", response_model=ProjectOut)
def update_project(
    project_id: UUID,
    body: ProjectPatch,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ProjectOut:
    row = projects.update(
        uow,
        caller,
        projects.get(uow, project_id, for_update=True),
        name=body.name,
        description=body.description,
        clear_description="description" in body.model_fields_set and body.description is None,
        members=body.members(),
        now=c.clock(),
    )
    return _out(projects.view(uow, row))


@router.delete("/projects/{project_id}", status_code=204, response_class=Response)
def delete_project(project_id: UUID, caller: Caller, uow: UnitOfWork) -> Response:
    """Delete the project (its creator or an admin); its members stay, only the grouping
    goes."""
    row = projects.get(uow, project_id, for_update=True)
    projects.check_may_change(row, caller)
    uow.delete(row)
    return Response(status_code=204)


@router.post(
    "/projects/{project_id}/artifacts",
    response_model=ProjectOut,
    status_code=status.HTTP_201_CREATED,
)
def add_project_artifact(
    project_id: UUID,
    body: ArtifactAdd,
    response: Response,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ProjectOut:
    """Add an artifact: a CAD artifact (``artifactId``) or a stored one (``key``). 200
    when the project already had it."""
    row = projects.get(uow, project_id, for_update=True)
    added = projects.add_artifact(
        uow,
        caller,
        row,
        artifact_id=body.artifact_id,
        key=body.key,
        store=c.artifacts,
        now=c.clock(),
    )
    if added is None:
        response.status_code = status.HTTP_200_OK
    return _out(projects.view(uow, row))
