"""What the console's project pages show (issue 18, item 4), read in one short transaction
each: the projects with their summary line and counts, and one project's conversations,
CAD jobs, artifacts and print jobs with their outcomes.

Membership and the summary are the API's own use case (``conversation.projects.view``);
this module only reads, by the ids it gives, what a page names about each member. A
conversation's words stay its participants' (and the safety and admin roles'): to anyone
else the page shows that the conversation exists, as ``GET /api/projects/{id}`` does, and
neither its opening words nor a link into it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    ConversationMessage,
    ConversationSession,
    Device,
    FabricationJob,
    Project,
)
from kittylab.conversation import projects
from kittylab.conversation.projects import ProjectView
from kittylab.domain.principal import Principal

LIST_LIMIT = 100
"""The newest projects the list page shows."""

OPENING_CHARS = 140
"""How much of a conversation's first request names it."""


@dataclass(frozen=True)
class ConversationLine:
    id: UUID
    readable: bool
    opening: str | None
    last_message_at: datetime | None


@dataclass(frozen=True)
class CADJobLine:
    id: UUID
    prompt: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class ArtifactLine:
    id: UUID
    cad_job_id: UUID
    artifact_type: str
    provider: str
    quality_score: float | None


@dataclass(frozen=True)
class PrintLine:
    id: UUID
    printer: str
    status: str
    cad_artifact_id: UUID | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class ProjectPage:
    view: ProjectView
    conversations: list[ConversationLine]
    cad_jobs: list[CADJobLine]
    artifacts: list[ArtifactLine]
    prints: list[PrintLine]


def list_projects(session: Session) -> list[ProjectView]:
    """The newest projects, each with its members and summary (as ``GET /api/projects``)."""
    rows = session.scalars(select(Project).order_by(Project.id.desc()).limit(LIST_LIMIT))
    return [projects.view(session, row) for row in rows]


def _conversations(session: Session, ids: list[UUID], viewer: Principal) -> list[ConversationLine]:
    found = {
        row.id: row
        for row in session.scalars(
            select(ConversationSession).where(ConversationSession.id.in_(ids))
        )
    }
    lines = []
    for conversation_id in ids:
        row = found.get(conversation_id)
        readable = row is not None and (
            viewer.reads_all_records or viewer.user_id in row.active_participants
        )
        opening = None
        if readable:
            opening = session.scalar(
                select(ConversationMessage.text)
                .where(
                    ConversationMessage.conversation_id == conversation_id,
                    ConversationMessage.kind == "request",
                )
                .order_by(ConversationMessage.created_at, ConversationMessage.id)
                .limit(1)
            )
            if opening is not None and len(opening) > OPENING_CHARS:
                opening = opening[: OPENING_CHARS - 1] + "…"
        lines.append(
            ConversationLine(
                id=conversation_id,
                readable=readable,
                opening=opening,
                last_message_at=row.last_message_at if readable and row is not None else None,
            )
        )
    return lines


def read_project(session: Session, project_id: UUID, viewer: Principal) -> ProjectPage:
    """One project as its page shows it; ``NotFound`` when there is none."""
    view = projects.view(session, projects.get(session, project_id))
    jobs = {j.id: j for j in session.scalars(select(CADJob).where(CADJob.id.in_(view.cad_job_ids)))}
    artifacts = {
        a.id: a
        for a in session.scalars(select(CADArtifact).where(CADArtifact.id.in_(view.artifact_ids)))
    }
    prints = {
        p.id: (p, name)
        for p, name in session.execute(
            select(FabricationJob, Device.display_name)
            .join(Device, Device.id == FabricationJob.device_id)
            .where(FabricationJob.id.in_(view.print_job_ids))
        )
    }
    return ProjectPage(
        view=view,
        conversations=_conversations(session, view.conversation_ids, viewer),
        cad_jobs=[
            CADJobLine(j.id, j.prompt, j.status.value, j.created_at)
            for i in view.cad_job_ids
            if (j := jobs.get(i)) is not None
        ],
        artifacts=[
            ArtifactLine(
                a.id, a.cad_job_id, a.artifact_type.value, a.provider.value, a.quality_score
            )
            for i in view.artifact_ids
            if (a := artifacts.get(i)) is not None
        ],
        prints=[
            PrintLine(p.id, name, p.status.value, p.cad_artifact_id, p.created_at, p.completed_at)
            for p, name in (prints[i] for i in view.print_job_ids if i in prints)
        ],
    )
