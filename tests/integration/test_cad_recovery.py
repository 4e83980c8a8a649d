"""CAD jobs interrupted part-way — a process that died after storing artifacts, a second run
racing the first — on PostgreSQL, the folder store and the real CadQuery worker: a job is
finished with what it stored, and no run deletes or overwrites another run's files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.adapters.db.tables import CADArtifact, CADJob
from kittylab.domain.enums import CADJobStatus, CADProvider
from kittylab.services.cad import (
    CadProviderPort,
    CadService,
    GenerateRequest,
    PolicyMode,
    ProviderOutput,
    ProviderRequest,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    workers.warm_up()
    yield workers
    workers.close()


def _cadquery_only(container: bootstrap.Container, pool: CadWorkerPool) -> CadService:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    cad.providers = [p for p in cad.providers if p.name is CADProvider.CADQUERY]
    return cad


def _as_left_by_a_crash_before_finishing(container: bootstrap.Container, job_id: UUID) -> None:
    """The job as a process leaves it that died between storing its artifacts and marking
    the job completed: still ``running``, the attempts not yet written."""
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, job_id)
        assert job is not None
        job.status = CADJobStatus.RUNNING
        job.completed_at = None
        job.details = {k: v for k, v in job.details.items() if k not in ("provider", "fallbacks")}
        job.details["attempts"] = []


def _stored_rows(container: bootstrap.Container, job_id: UUID) -> list[CADArtifact]:
    with container.database.unit_of_work() as session:
        rows = list(session.scalars(select(CADArtifact).where(CADArtifact.cad_job_id == job_id)))
        session.expunge_all()
    return rows


def _sha256(container: bootstrap.Container, key: str) -> str:
    return hashlib.sha256(b"".join(container.artifacts.read_chunks(key))).hexdigest()


def test_a_job_that_died_after_storing_its_artifacts_is_finished_with_them_when_run_again(
    container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = _cadquery_only(container, pool)
    done = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.OFFLINE, requested_by=None)
    )
    _as_left_by_a_crash_before_finishing(container, done.job.id)

    again = cad.run_job(done.job.id)

    assert again.job.status is CADJobStatus.COMPLETED
    assert {a.id for a in again.artifacts} == {a.id for a in done.artifacts}
    assert again.job.details["provider"] == "cadquery"
    assert again.job.details["attempts"][0]["outcome"] == "succeeded"
    rows = _stored_rows(container, done.job.id)
    assert len(rows) == 3
    for row in rows:
        assert container.artifacts.exists(row.artifact_key)
        assert _sha256(container, row.artifact_key) == row.metadata_["sha256"]


class _RacedProvider:
    """CadQuery, except that while it builds, another run of the same job (a recovery
    re-run that overlapped the original) builds, stores and finishes the job first."""

    offline = True
    name = CADProvider.CADQUERY

    def __init__(self, inner: CadProviderPort, rival: CadService) -> None:
        self.inner = inner
        self.rival = rival

    def unavailable_reason(self) -> str | None:
        return None

    def needs_spec(self) -> bool:
        return True

    def needs_image(self) -> bool:
        return False

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        output = self.inner.generate(request, work_dir)
        with self.rival.database.unit_of_work() as session:
            running = session.scalars(
                select(CADJob.id).where(CADJob.status == CADJobStatus.RUNNING)
            ).one()
        self.rival.run_job(running)
        return output


def test_a_run_that_loses_a_race_leaves_the_winners_files_and_records_untouched(
    container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    rival = _cadquery_only(container, pool)
    cad = _cadquery_only(container, pool)
    cad.providers = [_RacedProvider(rival.providers[0], rival)]

    result = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.OFFLINE, requested_by=None)
    )

    assert result.job.status is CADJobStatus.COMPLETED
    rows = _stored_rows(container, result.job.id)
    assert len(rows) == 3
    assert {a.id for a in result.artifacts} == {row.id for row in rows}
    for row in rows:
        assert container.artifacts.exists(row.artifact_key)
        assert _sha256(container, row.artifact_key) == row.metadata_["sha256"]
