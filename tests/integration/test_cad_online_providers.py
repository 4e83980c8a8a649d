"""Zoo and Tripo adapters against local servers speaking their documented APIs, and the
``auto`` policy's fallback to the offline pipeline on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.cad.tripo import TripoProvider
from kittylab.adapters.cad.worker import CadBuildFailed, CadWorkerPool
from kittylab.adapters.cad.zoo import ZooProvider
from kittylab.adapters.db.tables import CADArtifact, CADJob
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.planning import PolicyMode
from kittylab.cad.ports import CadProviderPort, ProviderRequest
from kittylab.cad.runs import GenerateRequest
from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.enums import ArtifactType, CADJobStatus
from tests.integration.cad_contract_servers import STEP, ContractServer, tripo_server, zoo_server
from tests.integration.conftest import Person

ZOO_TOKEN = "zoo-contract-token"
TRIPO_KEY = "tsk_contract"


@pytest.fixture
def zoo() -> Iterator[ContractServer]:
    with zoo_server(ZOO_TOKEN) as server:
        yield server


@pytest.fixture
def tripo() -> Iterator[ContractServer]:
    with tripo_server(TRIPO_KEY) as server:
        yield server


def _zoo(url: str, token: str = ZOO_TOKEN) -> ZooProvider:
    return ZooProvider(token, base_url=url, poll_seconds=0.05, deadline_seconds=10)


def test_zoo_generates_step_and_stl_and_keeps_the_kcl(zoo: ContractServer, tmp_path: Path) -> None:
    output = _zoo(zoo.url).generate(ProviderRequest("a 20 mm cube", None), tmp_path)
    assert output.files[ArtifactType.STEP].read_bytes() == STEP
    assert output.files[ArtifactType.STL].stat().st_size > 0
    assert output.parametric is True
    assert output.model_version == "zoo contract-1"
    assert "extrude" in output.metadata["zoo"]["kcl"]
    methods = [(m, p.split("/")[1]) for m, p, _ in zoo.recorded.requests]
    assert methods[0] == ("POST", "ai")
    assert zoo.recorded.requests[0][2] == {"prompt": "a 20 mm cube"}
    assert ("GET", "user") in methods
    assert methods[-1] == ("POST", "file")


def test_zoo_failed_generation_is_a_build_failure_with_zoos_reason(
    zoo: ContractServer, tmp_path: Path
) -> None:
    with pytest.raises(CadBuildFailed, match="could not make that"):
        _zoo(zoo.url).generate(ProviderRequest("an impossible part", None), tmp_path)


def test_zoo_refusing_the_token_makes_the_provider_unavailable(
    zoo: ContractServer, tmp_path: Path
) -> None:
    with pytest.raises(ProviderUnavailable, match="401"):
        _zoo(zoo.url, token="wrong").generate(ProviderRequest("a cube", None), tmp_path)


def test_unreachable_zoo_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    provider = ZooProvider(ZOO_TOKEN, base_url="http://127.0.0.1:9", request_timeout_seconds=2)
    with pytest.raises(ProviderUnavailable, match="cannot reach Zoo"):
        provider.generate(ProviderRequest("a cube", None), tmp_path)


def test_zoo_without_a_token_reports_itself_unavailable() -> None:
    assert _zoo("http://unused", token="").unavailable_reason() == "no Zoo API token is configured"


def test_tripo_text_to_model_polls_and_converts_the_glb_to_stl(
    tripo: ContractServer, tmp_path: Path
) -> None:
    provider = TripoProvider(TRIPO_KEY, base_url=tripo.url, poll_seconds=0.1, deadline_seconds=20)
    output = provider.generate(ProviderRequest("a 20 mm cube", None), tmp_path)
    assert set(output.files) == {ArtifactType.STL}
    assert output.parametric is False
    posted = tripo.recorded.requests[0]
    assert posted[0:2] == ("POST", "/v3/generation/text-to-model")
    assert posted[2] is not None and posted[2]["prompt"] == "a 20 mm cube"
    assert any(p.startswith("/files/") for _, p, _ in tripo.recorded.requests)
    import trimesh

    mesh = trimesh.load(str(output.files[ArtifactType.STL]), force="mesh")
    assert sorted(mesh.extents) == pytest.approx([20, 20, 20])


def test_tripo_image_to_model_sends_the_image_url_and_converts_the_glb_to_stl(
    tripo: ContractServer, tmp_path: Path
) -> None:
    provider = TripoProvider(TRIPO_KEY, base_url=tripo.url, poll_seconds=0.1, deadline_seconds=20)
    image = "https://images.lab.example/bracket.png"
    output = provider.generate(
        ProviderRequest("a bracket like this one", None, ("references/notes.txt", image)),
        tmp_path,
    )
    posted = tripo.recorded.requests[0]
    assert posted[0:2] == ("POST", "/v3/generation/image-to-model")
    assert posted[2] is not None and posted[2]["input"] == image
    assert posted[2]["model"] == "v2.5-20250123"
    assert output.metadata["tripo"]["mode"] == "image"
    assert set(output.files) == {ArtifactType.STL}
    import trimesh

    mesh = trimesh.load(str(output.files[ArtifactType.STL]), force="mesh")
    assert sorted(mesh.extents) == pytest.approx([20, 20, 20])


def test_tripo_refusing_the_key_makes_the_provider_unavailable(
    tripo: ContractServer, tmp_path: Path
) -> None:
    provider = TripoProvider("tsk_wrong", base_url=tripo.url, poll_seconds=0.1)
    with pytest.raises(ProviderUnavailable, match="Tripo refused the key"):
        provider.generate(ProviderRequest("a cube", None), tmp_path)


class _RecordingQueue:
    """The CAD job queue port, recording what was deferred (the test runs the job)."""

    def __init__(self) -> None:
        self.deferred: list[UUID] = []

    def defer_cad_job(self, job_id: UUID) -> None:
        self.deferred.append(job_id)

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        pass


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    yield workers
    workers.close()


def _cadquery(providers: list[CadProviderPort]) -> list[CadProviderPort]:
    return [p for p in providers if p.name.value == "cadquery"]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_auto_tries_zoo_first_then_falls_back_to_cadquery_recording_both(
    zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    settings = container.settings.model_copy(deep=True)
    settings.cad.zoo_api_token = None
    cad = bootstrap.cad_service(settings, container.database, container.artifacts, pool, None)
    zoo_provider = _zoo(zoo.url)
    cad.providers = [zoo_provider, *_cadquery(cad.providers)]
    queue = _RecordingQueue()
    cad.queue = queue
    before = _metric("kittylab_cad_fallbacks_total", from_provider="zoo", to_provider="cadquery")

    queued = cad.generate(
        GenerateRequest(
            prompt="an impossible 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None
        )
    )
    assert queued.job.status is CADJobStatus.QUEUED
    assert queued.providers == ["zoo", "cadquery"]
    assert queue.deferred == [queued.job.id]

    done = cad.run_job(queued.job.id)
    assert done.job.status is CADJobStatus.COMPLETED
    attempts = done.job.details["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        ("zoo", "failed"),
        ("cadquery", "succeeded"),
    ]
    assert "could not make that" in attempts[0]["error"]
    assert done.job.details["fallbacks"] == 1
    assert {a.provider.value for a in done.artifacts} == {"cadquery"}
    after = _metric("kittylab_cad_fallbacks_total", from_provider="zoo", to_provider="cadquery")
    assert after == before + 1


def test_auto_with_a_working_zoo_stores_zoos_step_with_its_score(
    zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    cad.providers = [_zoo(zoo.url), *_cadquery(cad.providers)]
    cad.queue = _RecordingQueue()
    queued = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    done = cad.run_job(queued.job.id)
    assert [a["provider"] for a in done.job.details["attempts"]] == ["zoo"]
    with container.database.unit_of_work() as session:
        rows = session.scalars(
            select(CADArtifact).where(CADArtifact.cad_job_id == queued.job.id)
        ).all()
        kinds = {row.artifact_type for row in rows}
        assert kinds == {ArtifactType.STEP, ArtifactType.STL, ArtifactType.PREVIEW}
        step = next(row for row in rows if row.artifact_type is ArtifactType.STEP)
        assert step.metadata_["zoo"]["kcl"].startswith("const cube")
        assert step.metadata_["bounding_box"]["expected"] == [20, 20, 20]
        assert step.quality_score is not None and step.quality_score > 0.9
        # Zoo gives no validity verdict: the STEP was read and checked in the CadQuery worker.
        assert step.metadata_["quality"]["solid_valid"] == {"value": True, "source": "brep"}
        job = session.get(CADJob, queued.job.id)
        assert job is not None and job.details["provider"] == "zoo"
    assert container.artifacts.exists(step.artifact_key)


def test_online_prompts_the_part_library_cannot_read_still_go_to_zoo(
    zoo: ContractServer, container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    cad.providers = [_zoo(zoo.url), *_cadquery(cad.providers)]
    cad.queue = _RecordingQueue()
    queued = cad.generate(
        GenerateRequest(prompt="a small vase", policy_mode=PolicyMode.ONLINE, requested_by=None)
    )
    assert queued.providers == ["zoo"]
    assert "spec" not in queued.job.details
    assert parse_prompt("a 20 mm cube").family.value == "block"


def test_an_auto_job_is_run_by_the_background_worker_to_completion(
    zoo: ContractServer,
    container: bootstrap.Container,
    pool: CadWorkerPool,
    database_url: str,
) -> None:
    from kittylab.config import JobSettings
    from kittylab.worker.tasks import JobContext
    from tests.integration.worker_runner import run_worker_until

    settings = container.settings.model_copy(
        update={"jobs": JobSettings(poll_interval_seconds=0.2)}
    )
    cad = bootstrap.cad_service(
        settings,
        container.database,
        container.artifacts,
        pool,
        # The durable queue, as bootstrap gives the CAD service (container.jobs sends
        # device commands in process and only delegates to it).
        container.dispatcher.durable if container.dispatcher else container.jobs,  # type: ignore[arg-type]
    )
    cad.providers = [_zoo(zoo.url), *_cadquery(cad.providers)]
    queued = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    assert queued.job.status is CADJobStatus.QUEUED

    def finished() -> bool:
        with container.database.unit_of_work() as session:
            job = session.get(CADJob, queued.job.id)
            return job is not None and job.status is CADJobStatus.COMPLETED

    context = JobContext(
        database=container.database, sender=container.sender, settings=settings, cad=cad
    )
    run_worker_until(database_url, context, finished, timeout=60)
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, queued.job.id)
        assert job is not None
        assert job.details["provider"] == "zoo"


def test_auto_without_an_online_provider_builds_offline_at_once(
    container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    cad.providers = [ZooProvider(None), *_cadquery(cad.providers)]
    result = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    assert result.job.status is CADJobStatus.COMPLETED
    assert result.providers == ["cadquery"]
    assert result.job.details["requestedPolicy"] == "auto"


def test_a_job_recovered_mid_run_runs_again_and_a_finished_one_is_not_rebuilt(
    container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    zoo_down = ZooProvider(ZOO_TOKEN, base_url="http://127.0.0.1:9", request_timeout_seconds=2)
    cad.providers = [zoo_down, *_cadquery(cad.providers)]
    cad.queue = _RecordingQueue()
    queued = cad.generate(
        GenerateRequest(prompt="a 20 mm cube", policy_mode=PolicyMode.AUTO, requested_by=None)
    )
    assert queued.job.status is CADJobStatus.QUEUED
    with container.database.unit_of_work() as session:
        job = session.get(CADJob, queued.job.id)
        assert job is not None
        job.status = CADJobStatus.RUNNING  # as left by a worker killed mid-run
    done = cad.run_job(queued.job.id)
    assert done.job.status is CADJobStatus.COMPLETED
    again = cad.run_job(queued.job.id)
    assert {a.id for a in again.artifacts} == {a.id for a in done.artifacts}


def test_a_compare_job_runs_zoo_and_cadquery_and_compare_shows_both_side_by_side(
    zoo: ContractServer,
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    pool: CadWorkerPool,
) -> None:
    container.cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    container.cad.providers = [_zoo(zoo.url), *_cadquery(container.cad.providers)]
    queue = _RecordingQueue()
    container.cad.queue = queue
    answer = client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "auto", "compare": True},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    job_id = UUID(answer.json()["cadJobId"])
    assert answer.json()["providers"] == ["zoo", "cadquery"]
    assert queue.deferred == [job_id]

    done = container.cad.run_job(job_id)  # what the background worker does

    assert [(a["provider"], a["outcome"]) for a in done.job.details["attempts"]] == [
        ("zoo", "succeeded"),
        ("cadquery", "succeeded"),
    ]
    assert done.job.details["fallbacks"] == 0
    compared = client.get(f"/api/cad/jobs/{job_id}/compare", headers=operator.headers)
    assert compared.status_code == 200
    entries = {e["provider"]: e for e in compared.json()["entries"]}
    assert set(entries) == {"zoo", "cadquery"}
    for entry in entries.values():
        assert {a["artifactType"] for a in entry["artifacts"]} == {"step", "stl", "preview"}
        assert entry["previewUrl"].endswith("/download")
        assert entry["qualityScore"] > 0.9
        assert entry["quality"]["bounding_box"]["within_tolerance"] is True
    assert entries["zoo"]["modelVersion"] == "zoo contract-1"
    assert entries["cadquery"]["modelVersion"].startswith("cadquery ")
    scores = [e["qualityScore"] for e in compared.json()["entries"]]
    assert scores == sorted(scores, reverse=True)


def test_a_request_can_name_its_providers_and_is_refused_naming_one_it_cannot_use(
    zoo: ContractServer,
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    pool: CadWorkerPool,
) -> None:
    container.cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    container.cad.providers = [_zoo(zoo.url), *_cadquery(container.cad.providers)]
    container.cad.queue = _RecordingQueue()
    only_cadquery = client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "auto", "providers": ["cadquery"]},
        headers=operator.headers,
    )
    assert only_cadquery.status_code == 202, only_cadquery.text
    assert only_cadquery.json()["status"] == "completed"  # offline only: built at once
    assert only_cadquery.json()["providers"] == ["cadquery"]
    assert zoo.recorded.requests == []

    for providers, mode in ((["zoo"], "offline"), (["tripo"], "auto")):
        refused = client.post(
            "/api/cad/generate",
            json={"prompt": "a 20 mm cube", "policyMode": mode, "providers": providers},
            headers=operator.headers,
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["field"] == "providers"
