"""Reading CAD records: a job with its artifacts, and an artifact's lineage (the iterations
that led to it, the prints made from it and what their monitors saw)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import CADArtifact, CADJob, FabricationJob, PrintMonitorEvent
from kittylab.domain.errors import NotFound


def get_job(session: Session, job_id: UUID) -> CADJob:
    job = session.get(CADJob, job_id)
    if job is None:
        raise NotFound("CAD job", job_id)
    return job


def job_with_artifacts(session: Session, job_id: UUID) -> tuple[CADJob, list[CADArtifact]]:
    job = get_job(session, job_id)
    artifacts = list(
        session.scalars(
            select(CADArtifact)
            .where(CADArtifact.cad_job_id == job_id)
            .order_by(CADArtifact.created_at, CADArtifact.artifact_key)
        )
    )
    return job, artifacts


@dataclass(frozen=True)
class Lineage:
    artifact: CADArtifact
    jobs: list[CADJob]
    """The artifact's job, then the jobs it iterated on, parent first after it."""
    prints: list[FabricationJob]
    """The fabrication jobs that printed the artifact, oldest first."""
    events: dict[UUID, list[PrintMonitorEvent]]
    """Each print's monitor events, by fabrication job id."""


def lineage(session: Session, artifact_id: UUID) -> Lineage:
    """The artifact, its job and that job's ancestors (iterations), the fabrication jobs
    that printed it, and each print's monitor events (the outcome as observed)."""
    artifact = session.get(CADArtifact, artifact_id)
    if artifact is None:
        raise NotFound("CAD artifact", artifact_id)
    chain: list[CADJob] = []
    job: CADJob | None = session.get(CADJob, artifact.cad_job_id)
    seen: set[UUID] = set()
    while job is not None and job.id not in seen:
        seen.add(job.id)
        chain.append(job)
        job = session.get(CADJob, job.parent_job_id) if job.parent_job_id else None
    prints = list(
        session.scalars(
            select(FabricationJob)
            .where(FabricationJob.cad_artifact_id == artifact_id)
            .order_by(FabricationJob.created_at)
        )
    )
    events: dict[UUID, list[PrintMonitorEvent]] = {f.id: [] for f in prints}
    if prints:
        for event in session.scalars(
            select(PrintMonitorEvent)
            .where(PrintMonitorEvent.fabrication_job_id.in_(list(events)))
            .order_by(PrintMonitorEvent.occurred_at)
        ):
            events[event.fabrication_job_id].append(event)
    return Lineage(artifact, chain, prints, events)
