"""CAD jobs interrupted part-way — a process that died after storing artifacts or in the
middle of a build, a queue that would not take the job, a second run racing the first — on
PostgreSQL, the folder store, the real CadQuery worker and a real procrastinate worker
running the recovery task: every job ends finished with what it stored, or failed with the
reason; no run deletes or overwrites another run's files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.adapters.cad.zoo import ZooProvider
from kittylab.adapters.db.tables import CADArtifact, CADJob, Notification, User
from kittylab.adapters.jobs.queue import JobQueueUnavailable
from kittylab.cad.errors import CadGenerationFailed
from kittylab.cad.planning import PolicyMode
from kittylab.cad.ports import CadProviderPort, ProviderOutput, ProviderRequest
from kittylab.cad.recovery import MAX_RUNS
from kittylab.cad.runs import CadService, GenerateRequest
from kittylab.config import CadSettings, JobSettings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADJobStatus, CADProvider
from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import RESUME_CAD_TASK, JobContext
from tests.integration.cad_contract_servers import ContractServer, zoo_server
from tests.integration.conftest import Person

ZOO_TOKEN = "zoo-contract-token"


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


# --- the recovery task -------------------------------------------------------------------


@pytest.fixture
def zoo() -> Iterator[ContractServer]:
    with zoo_server(ZOO_TOKEN) as server:
        yield server


class _QueueDown:
    """The CAD job queue while PostgreSQL's job tables cannot be reached."""

    def defer_cad_job(self, job_id: UUID) -> None:
        raise JobQueueUnavailable(f"cannot defer CAD job {job_id}: PoolTimeout")

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        raise JobQueueUnavailable("cannot defer a notification: PoolTimeout")


def _later(delay: timedelta) -> Callable[[], datetime]:
    return lambda: utcnow() + delay


def _service(
    container: bootstrap.Container,
    pool: CadWorkerPool,
    *,
    clock: Callable[[], datetime] = utcnow,
    zoo_url: str | None = None,
) -> CadService:
    """The app's CAD service: Zoo (the contract server) when given, then CadQuery."""
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None, clock=clock
    )
    online: list[CadProviderPort] = []
    if zoo_url is not None:
        online.append(ZooProvider(ZOO_TOKEN, base_url=zoo_url, poll_seconds=0.05))
    cad.providers = [*online, *(p for p in cad.providers if p.name is CADProvider.CADQUERY)]
    return cad


def _run_recovery(database_url: str, container: bootstrap.Container, cad: CadService) -> None:
    """One run of the periodic recovery task, then whatever it deferred, on a real worker
    that stops once the queue is empty — as the cluster does a minute after it restarts."""
    settings = container.settings.model_copy(
        update={"jobs": JobSettings(poll_interval_seconds=0.2)}
    )
    context = JobContext(
        database=container.database,
        sender=container.sender,
        settings=settings,
        clock=cad.clock,
        cad=cad,
    )

    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            await app.configure_task(RESUME_CAD_TASK).defer_async(timestamp=0)
            await run_worker(app, context, concurrency=1, wait=False)

    asyncio.run(main())


def _job(container: bootstrap.Container, job_id: UUID) -> CADJob:
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, job_id)
        assert job is not None
        session.expunge(job)
    return job


def test_a_job_the_queue_would_not_take_is_accepted_and_built_once_the_sweep_runs(
    zoo: ContractServer,
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    pool: CadWorkerPool,
    database_url: str,
) -> None:
    container.cad = _service(container, pool, zoo_url=zoo.url)
    container.cad.queue = _QueueDown()

    answer = client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "auto"},
        headers=operator.headers,
    )

    # Accepted, not a 503: a retry would have built (and paid for) the part twice.
    assert answer.status_code == 202, answer.text
    job_id = UUID(answer.json()["cadJobId"])
    assert answer.json()["status"] == "queued"

    _run_recovery(database_url, container, _service(container, pool, zoo_url=zoo.url))
    assert _job(container, job_id).status is CADJobStatus.QUEUED, "too young to be stranded"

    later = _service(container, pool, clock=_later(timedelta(minutes=2)), zoo_url=zoo.url)
    _run_recovery(database_url, container, later)
    job = _job(container, job_id)
    assert job.status is CADJobStatus.COMPLETED
    assert job.details["provider"] == "zoo"
    assert job.details["runs"] == 1


def test_an_offline_job_whose_process_was_killed_mid_build_is_built_after_the_restart(
    container: bootstrap.Container, pool: CadWorkerPool, database_url: str, tmp_path: Path
) -> None:
    dying = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.cad_dying_process",
            database_url,
            str(tmp_path / "store"),
            "a 20 mm cube",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert dying.stdout is not None
        line = dying.stdout.readline()
        assert line.startswith("building "), line
        job_id = UUID(line.split()[1])
    finally:
        os.kill(dying.pid, signal.SIGKILL)
        dying.wait(timeout=30)
    assert _job(container, job_id).status is CADJobStatus.RUNNING

    # Within the grace a live process may still be building: left alone.
    _run_recovery(database_url, container, _service(container, pool))
    assert _job(container, job_id).status is CADJobStatus.RUNNING

    grace = timedelta(seconds=container.settings.cad.recover_after_seconds)
    restarted = _service(container, pool, clock=_later(grace + timedelta(minutes=1)))
    _run_recovery(database_url, container, restarted)

    job = _job(container, job_id)
    assert job.status is CADJobStatus.COMPLETED
    assert job.details["runs"] == 2
    assert [(a["provider"], a["outcome"]) for a in job.details["attempts"]] == [
        ("cadquery", "succeeded")
    ]
    rows = _stored_rows(container, job_id)
    assert {row.artifact_type.value for row in rows} == {"step", "stl", "preview"}
    assert all(container.artifacts.exists(row.artifact_key) for row in rows)


def test_a_job_whose_runs_keep_dying_is_failed_with_the_reason_and_operators_alerted(
    zoo: ContractServer,
    container: bootstrap.Container,
    operator: Person,
    pool: CadWorkerPool,
    database_url: str,
) -> None:
    with container.database.unit_of_work() as session:
        user = session.get(User, operator.user_id)
        assert user is not None
        user.email = "olivia@lab.example"
    cad = _service(container, pool, zoo_url=zoo.url)
    cad.queue = _QueueDown()
    queued = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    long_ago = utcnow() - timedelta(hours=3)
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, queued.job.id)
        assert job is not None
        job.status = CADJobStatus.RUNNING  # as left by the third process that died with it
        job.details = {**job.details, "runs": MAX_RUNS, "progressAt": long_ago.isoformat()}

    _run_recovery(database_url, container, _service(container, pool, zoo_url=zoo.url))

    job = _job(container, queued.job.id)
    assert job.status is CADJobStatus.FAILED
    assert job.error is not None and f"started {MAX_RUNS} times and never finished" in job.error
    assert zoo.recorded.requests == [], "not run a fourth time"
    with container.database.unit_of_work() as session:
        alert = session.scalars(select(Notification)).one()
        assert alert.recipient == "olivia@lab.example"


def test_a_background_run_retried_after_its_worker_died_too_often_fails_instead_of_building(
    zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = _service(container, pool, zoo_url=zoo.url)
    cad.queue = _QueueDown()
    queued = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, queued.job.id)
        assert job is not None
        job.status = CADJobStatus.RUNNING
        job.details = {**job.details, "runs": MAX_RUNS}

    with pytest.raises(CadGenerationFailed, match=f"started {MAX_RUNS} times"):
        cad.run_job(queued.job.id)
    assert _job(container, queued.job.id).status is CADJobStatus.FAILED
    assert zoo.recorded.requests == []


def test_a_compare_job_run_again_builds_only_the_providers_it_has_no_artifacts_from(
    zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = _service(container, pool, zoo_url=zoo.url)
    cad.queue = _QueueDown()
    queued = cad.generate(
        GenerateRequest(
            prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None, compare=True
        )
    )
    # The first run records Zoo's artifacts, then its process dies before CadQuery.
    zoo_only = _service(container, pool, zoo_url=zoo.url)
    zoo_only.providers = zoo_only.providers[:1]
    zoo_only.run_job(queued.job.id)
    _as_left_by_a_crash_before_finishing(container, queued.job.id)
    zoo_calls = len(zoo.recorded.requests)

    again = cad.run_job(queued.job.id)

    assert len(zoo.recorded.requests) == zoo_calls, "Zoo is not asked (and paid) twice"
    assert [(a["provider"], a["outcome"]) for a in again.job.details["attempts"]] == [
        ("zoo", "succeeded"),
        ("cadquery", "succeeded"),
    ]
    assert again.job.details["attempts"][0]["recovered"] is True
    assert {a.provider.value for a in again.artifacts} == {"zoo", "cadquery"}


def test_a_recovery_grace_shorter_than_one_build_is_refused() -> None:
    with pytest.raises(ValidationError, match="recover_after_seconds"):
        CadSettings(build_timeout_seconds=120, recover_after_seconds=60)
