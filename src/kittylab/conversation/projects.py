"""Projects (issue 16): a piece of work — the conversations it was talked through, its CAD
jobs, the artifacts it made and the print jobs that printed them — under one name, with a
summary of what was made and how it printed.

Membership: a project holds what was added to it (``project_items``) and, read through
those, what follows from them: the CAD jobs of its conversations, the artifacts of its CAD
jobs, the print jobs of its artifacts. So talking a part through in a project's
conversation is enough for the part, and its prints, to show up in the project.

Who may do what: every signed-in person reads projects (the lab's shared record of what
it made; a conversation's words stay readable by its participants only). The creator and
an admin change or delete one; adding a conversation needs being one of its participants
(or the safety or admin role), as reading it does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    ConversationSession,
    FabricationJob,
    Project,
    ProjectItem,
)
from kittylab.domain.enums import Role
from kittylab.domain.errors import NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.records.ports import ArtifactStore, validate_key

NAME_MAX = 200
DESCRIPTION_MAX = 4000


@dataclass(frozen=True)
class Members:
    """Items to add, by kind; the field names are the API's (``conversationIds`` …)."""

    conversation_ids: Sequence[UUID] = ()
    cad_job_ids: Sequence[UUID] = ()
    artifact_ids: Sequence[UUID] = ()
    print_job_ids: Sequence[UUID] = ()


@dataclass(frozen=True)
class Summary:
    conversations: int
    cad_jobs: dict[str, int]
    artifacts: dict[str, int]
    stored_artifacts: int
    print_jobs: dict[str, int]
    text: str


@dataclass(frozen=True)
class ProjectView:
    project: Project
    conversation_ids: list[UUID] = field(default_factory=list)
    cad_job_ids: list[UUID] = field(default_factory=list)
    artifact_ids: list[UUID] = field(default_factory=list)
    artifact_keys: list[str] = field(default_factory=list)
    print_job_ids: list[UUID] = field(default_factory=list)
    summary: Summary | None = None


def _name(value: str) -> str:
    clean = value.strip()
    if not clean:
        raise ValidationFailed("name", "must not be empty")
    if len(clean) > NAME_MAX:
        raise ValidationFailed("name", f"must be at most {NAME_MAX} characters")
    return clean


def _description(value: str | None) -> str | None:
    if value is not None and len(value) > DESCRIPTION_MAX:
        raise ValidationFailed("description", f"must be at most {DESCRIPTION_MAX} characters")
    return value


def create(
    session: Session,
    caller: Principal,
    *,
    name: str,
    description: str | None,
    members: Members,
    now: datetime,
) -> Project:
    project = Project(
        name=_name(name),
        description=_description(description),
        created_by=caller.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(project)
    session.flush()
    add(session, caller, project, members)
    return project


def get(session: Session, project_id: UUID, *, for_update: bool = False) -> Project:
    project = session.get(Project, project_id, with_for_update=for_update or None)
    if project is None:
        raise NotFound("project", project_id)
    return project


def check_may_change(project: Project, caller: Principal) -> None:
    if project.created_by != caller.user_id and not caller.has_any(Role.ADMIN):
        raise PermissionDenied("only the project's creator or an admin can change it")


def update(
    session: Session,
    caller: Principal,
    project: Project,
    *,
    name: str | None,
    description: str | None,
    clear_description: bool,
    members: Members,
    now: datetime,
) -> Project:
    check_may_change(project, caller)
    if name is not None:
        project.name = _name(name)
    if clear_description:
        project.description = None
    elif description is not None:
        project.description = _description(description)
    add(session, caller, project, members)
    project.updated_at = now
    session.flush()
    return project


def add(session: Session, caller: Principal, project: Project, members: Members) -> None:
    """Add ``members`` (each checked to exist, under the API's field name); adding one
    already there does nothing."""
    have = _items(session, project.id)
    for index, conversation_id in enumerate(members.conversation_ids):
        where = f"conversationIds.{index}"
        conversation = session.get(ConversationSession, conversation_id)
        if conversation is None:
            raise ValidationFailed(where, f"no conversation with id {conversation_id}")
        if caller.user_id not in conversation.active_participants and not caller.reads_all_records:
            raise PermissionDenied(
                f"{where}: only the conversation's participants can add it to a project"
            )
        if conversation_id not in have.conversation_ids:
            have.conversation_ids.add(conversation_id)
            session.add(_item(project, caller, conversation_id=conversation_id))
    _add_all(session, caller, project, CADJob, members.cad_job_ids, have.cad_job_ids,
             "cadJobIds", "CAD job", "cad_job_id")  # fmt: skip
    _add_all(session, caller, project, CADArtifact, members.artifact_ids, have.artifact_ids,
             "artifactIds", "CAD artifact", "cad_artifact_id")  # fmt: skip
    _add_all(session, caller, project, FabricationJob, members.print_job_ids,
             have.print_job_ids, "printJobIds", "print job", "fabrication_job_id")  # fmt: skip
    session.flush()


def add_artifact(
    session: Session,
    caller: Principal,
    project: Project,
    *,
    artifact_id: UUID | None,
    key: str | None,
    store: ArtifactStore,
    now: datetime,
) -> ProjectItem | None:
    """``POST /api/projects/{id}/artifacts``: a CAD artifact by id, or any stored artifact
    (an upload, a snapshot) by its key; exactly one of them. Returns the new link, or
    ``None`` when the project already had it."""
    check_may_change(project, caller)
    if (artifact_id is None) == (key is None):
        raise ValidationFailed("artifactId", "give exactly one of artifactId and key")
    have = _items(session, project.id)
    if artifact_id is not None:
        if session.get(CADArtifact, artifact_id) is None:
            raise ValidationFailed("artifactId", f"no CAD artifact with id {artifact_id}")
        if artifact_id in have.artifact_ids:
            return None
        item = _item(project, caller, cad_artifact_id=artifact_id)
    else:
        assert key is not None
        try:
            validate_key(key)
        except ValidationFailed as exc:
            raise ValidationFailed("key", exc.message) from None
        if not store.exists(key):
            raise ValidationFailed("key", f"no artifact is stored under {key}")
        if key in have.artifact_keys:
            return None
        item = _item(project, caller, artifact_key=key)
    session.add(item)
    project.updated_at = now
    session.flush()
    return item


def view(session: Session, project: Project) -> ProjectView:
    """The project with its members (what was added, and what follows from it: see the
    module doc) and its summary."""
    have = _items(session, project.id)
    conversations = list(have.conversation_ids)
    cad_jobs = _union(
        have.cad_job_ids,
        session.scalars(select(CADJob.id).where(CADJob.conversation_id.in_(conversations)))
        if conversations
        else (),
    )
    artifacts = _union(
        have.artifact_ids,
        session.scalars(select(CADArtifact.id).where(CADArtifact.cad_job_id.in_(cad_jobs)))
        if cad_jobs
        else (),
    )
    prints = _union(
        have.print_job_ids,
        session.scalars(
            select(FabricationJob.id).where(FabricationJob.cad_artifact_id.in_(artifacts))
        )
        if artifacts
        else (),
    )
    summary = _summary(session, conversations, cad_jobs, artifacts, have.artifact_keys, prints)
    return ProjectView(
        project=project,
        conversation_ids=conversations,
        cad_job_ids=cad_jobs,
        artifact_ids=artifacts,
        artifact_keys=list(have.artifact_keys),
        print_job_ids=prints,
        summary=summary,
    )


def _summary(
    session: Session,
    conversations: list[UUID],
    cad_jobs: list[UUID],
    artifacts: list[UUID],
    keys: list[str],
    prints: list[UUID],
) -> Summary:
    cad = Counter(
        s.value for s in session.scalars(select(CADJob.status).where(CADJob.id.in_(cad_jobs)))
    )
    kinds = Counter(
        t.value
        for t in session.scalars(
            select(CADArtifact.artifact_type).where(CADArtifact.id.in_(artifacts))
        )
    )
    printed = Counter(
        s.value
        for s in session.scalars(select(FabricationJob.status).where(FabricationJob.id.in_(prints)))
    )
    parts = [f"{len(conversations)} conversation(s)"]
    parts.append(f"{len(cad_jobs)} CAD job(s)" + _counts(cad))
    made = len(artifacts) + len(keys)
    parts.append(f"{made} artifact(s)" + _counts(kinds))
    parts.append(f"{len(prints)} print job(s)" + _counts(printed))
    return Summary(
        conversations=len(conversations),
        cad_jobs=dict(cad),
        artifacts=dict(kinds),
        stored_artifacts=len(keys),
        print_jobs=dict(printed),
        text="; ".join(parts) + ".",
    )


def _counts(counter: Counter[str]) -> str:
    if not counter:
        return ""
    return " (" + ", ".join(f"{n} {k}" for k, n in sorted(counter.items())) + ")"


def _union(first: Iterable[UUID], more: Iterable[UUID]) -> list[UUID]:
    seen = dict.fromkeys(first)
    seen.update(dict.fromkeys(more))
    return list(seen)


@dataclass
class _Have:
    conversation_ids: set[UUID] = field(default_factory=set)
    cad_job_ids: set[UUID] = field(default_factory=set)
    artifact_ids: set[UUID] = field(default_factory=set)
    artifact_keys: list[str] = field(default_factory=list)
    print_job_ids: set[UUID] = field(default_factory=set)


def _items(session: Session, project_id: UUID) -> _Have:
    have = _Have()
    rows = session.scalars(
        select(ProjectItem).where(ProjectItem.project_id == project_id).order_by(ProjectItem.id)
    )
    for row in rows:
        if row.conversation_id is not None:
            have.conversation_ids.add(row.conversation_id)
        elif row.cad_job_id is not None:
            have.cad_job_ids.add(row.cad_job_id)
        elif row.cad_artifact_id is not None:
            have.artifact_ids.add(row.cad_artifact_id)
        elif row.artifact_key is not None:
            have.artifact_keys.append(row.artifact_key)
        elif row.fabrication_job_id is not None:
            have.print_job_ids.add(row.fabrication_job_id)
    return have


def _item(project: Project, caller: Principal, **member: Any) -> ProjectItem:
    return ProjectItem(project_id=project.id, added_by=caller.user_id, **member)


def _add_all(
    session: Session,
    caller: Principal,
    project: Project,
    model: type[CADJob] | type[CADArtifact] | type[FabricationJob],
    ids: Sequence[UUID],
    have: set[UUID],
    field_name: str,
    what: str,
    column: str,
) -> None:
    for index, item_id in enumerate(ids):
        if session.get(model, item_id) is None:
            raise ValidationFailed(f"{field_name}.{index}", f"no {what} with id {item_id}")
        if item_id not in have:
            have.add(item_id)
            session.add(_item(project, caller, **{column: item_id}))
