"""CAD generation through the HTTP API on PostgreSQL, the folder artifact store and the
real CadQuery worker: offline generation, downloads, compare, iterate, lineage, refusals
and the operator alert when the offline pipeline fails."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kittylab import bootstrap
from kittylab.adapters.cad.worker import CadWorkerPool, WorkerLimits
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADJob,
    Device,
    FabricationJob,
    Notification,
    PrintMonitorEvent,
    Zone,
)
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import GenerateRequest, progress_reply
from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import (
    CADJobStatus,
    DeviceKind,
    FabricationStatus,
    HazardLevel,
    MonitorEventType,
)
from tests.integration.cad_failures import generate_with_a_starved_worker, give_email
from tests.integration.conftest import Person

ISSUE_PROMPT = "a 60 by 60 mounting plate, 4 mm thick, four M4 holes in the corners"


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    workers.warm_up()
    yield workers
    workers.close()


@pytest.fixture
def cad_client(
    container: bootstrap.Container, client: TestClient, pool: CadWorkerPool
) -> TestClient:
    """The app with its CAD service on the module's warm worker (one import per module),
    CadQuery as the only provider whatever else this machine has installed."""
    container.cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    container.cad.providers = [p for p in container.cad.providers if p.name.value == "cadquery"]
    return client


def test_offline_generation_returns_scored_step_stl_and_preview_in_the_202(
    cad_client: TestClient, operator: Person, container: bootstrap.Container
) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": ISSUE_PROMPT, "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "completed"
    assert body["providers"] == ["cadquery"]
    assert body["spec"]["family"] == "mounting_plate"
    assert "hole_inset" in body["defaultsUsed"]
    kinds = {a["artifactType"]: a for a in body["artifacts"]}
    assert set(kinds) == {"step", "stl", "preview"}
    step = kinds["step"]
    assert step["qualityScore"] == pytest.approx(1.0)
    meta = step["metadata"]
    assert (meta["bounding_box"]["x"], meta["bounding_box"]["y"]) == (60, 60)
    assert meta["bounding_box"]["z"] == pytest.approx(4, abs=0.1)
    assert meta["quality"]["mesh"] == {"watertight": True, "manifold": True}
    assert meta["model_version"].startswith("cadquery 2.8")
    assert meta["material_hints"] == ["PLA", "PETG"]
    assert meta["generation_params"]["spec"]["params"]["hole_diameter"] == 4.5

    download = cad_client.get(step["downloadUrl"], headers=operator.headers)
    assert download.status_code == 200
    assert download.content.startswith(b"ISO-10303-21")
    assert download.headers["content-type"] == "model/step"
    preview = cad_client.get(kinds["preview"]["downloadUrl"], headers=operator.headers)
    assert preview.content.startswith(b"\x89PNG")

    job = cad_client.get(f"/api/cad/jobs/{body['cadJobId']}", headers=operator.headers).json()
    assert job["policyMode"] == "offline"
    assert job["details"]["attempts"][0]["outcome"] == "succeeded"
    assert container.artifacts.exists(step["artifactKey"])


def test_the_conversation_reply_names_the_part_status_score_and_defaults(
    container: bootstrap.Container, pool: CadWorkerPool
) -> None:
    cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, pool, None
    )
    result = cad.generate(
        GenerateRequest(
            prompt="rod 10 mm diameter 50 mm long",
            policy_mode=PolicyMode.OFFLINE,
            requested_by=None,
        )
    )
    reply = progress_reply(result)
    assert f"CAD job {result.job.id} for a cylinder: completed with 3 files" in reply
    assert "quality 1.00" in reply
    assert "assumed defaults for fillet" in reply


class _PresigningStore(FolderArtifactStore):
    """The folder store, but able to hand out URLs as an S3 store does."""

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        return f"https://s3.lab.example/{key}?expires={expires_seconds}"


def test_downloads_redirect_to_a_presigned_url_when_the_store_gives_one(
    cad_client: TestClient, operator: Person, container: bootstrap.Container
) -> None:
    body = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline"},
        headers=operator.headers,
    ).json()
    step = next(a for a in body["artifacts"] if a["artifactType"] == "step")
    container.artifacts = _PresigningStore(container.settings.data_dir / "artifacts")
    answer = cad_client.get(step["downloadUrl"], headers=operator.headers, follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == (
        f"https://s3.lab.example/{step['artifactKey']}?expires=900"
    )


def test_offline_with_no_offline_provider_is_a_409_and_records_nothing(
    cad_client: TestClient, operator: Person, container: bootstrap.Container, database: Database
) -> None:
    container.cad.providers = []
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": ISSUE_PROMPT, "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 409
    assert answer.json()["field"] == "policyMode"
    with database.unit_of_work() as session:
        assert session.scalars(select(CADJob)).first() is None


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        ("a plate 10 m long, 5 mm thick, 40 mm wide", "spec.length"),
        ("a 0 mm cube", "spec.length"),
        ("plate 60 x 40, 5 mm thick and 8 mm thick", "prompt"),
        ("__import__('os').system('touch /tmp/pwned') 20 mm cube", "prompt"),
        ("a vase 20 cm tall", "prompt"),
    ],
)
def test_bad_prompts_get_a_422_naming_the_field(
    cad_client: TestClient, operator: Person, prompt: str, field: str
) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": prompt, "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_prompts_are_stored_with_secrets_redacted(cad_client: TestClient, operator: Person) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube api_key=sk-abcdef1234567890abcdef", "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    job = cad_client.get(f"/api/cad/jobs/{answer.json()['cadJobId']}", headers=operator.headers)
    assert job.json()["prompt"] == "a 20 mm cube api_key=[redacted]"


def test_huge_prompts_are_refused_before_anything_runs(
    cad_client: TestClient, operator: Person
) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube " * 400, "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "prompt"


def test_a_failed_offline_job_alerts_operators_and_answers_a_clear_502(
    container: bootstrap.Container, client: TestClient, operator: Person, database: Database
) -> None:
    give_email(database, operator, "olivia@lab.example")
    # A worker that cannot even import CadQuery within its memory limit.
    answer = generate_with_a_starved_worker(container, client, operator, "a 20 mm cube")
    assert answer.status_code == 502
    problem = answer.json()
    assert "an operator has been alerted" in problem["detail"]
    with database.unit_of_work() as session:
        job = session.scalars(select(CADJob)).one()
        assert job.status is CADJobStatus.FAILED
        assert job.details["attempts"][0]["outcome"] == "failed"
        alert = session.scalars(select(Notification)).one()
        assert alert.recipient == "olivia@lab.example"
        assert "CAD job failed" in alert.payload["title"]


def test_with_every_worker_busy_past_the_wait_the_caller_gets_a_503_to_retry_and_no_alert(
    container: bootstrap.Container, client: TestClient, operator: Person, database: Database
) -> None:
    import threading
    import time

    give_email(database, operator, "olivia@lab.example")
    single = CadWorkerPool(size=1, limits=WorkerLimits(slot_wait_seconds=0.5))
    single.warm_up()
    container.cad = bootstrap.cad_service(
        container.settings, container.database, container.artifacts, single, None
    )
    container.cad.providers = [p for p in container.cad.providers if p.name.value == "cadquery"]
    slow = parse_prompt("spur gear 200 teeth module 2, 10 mm thick")  # seconds to build
    occupant = threading.Thread(target=single.build, args=(slow, container.settings.data_dir))
    try:
        occupant.start()
        time.sleep(0.3)
        started = time.perf_counter()
        answer = client.post(
            "/api/cad/generate",
            json={"prompt": "a 20 mm cube", "policyMode": "offline"},
            headers=operator.headers,
        )
        waited = time.perf_counter() - started
    finally:
        occupant.join()
        single.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    problem = answer.json()
    assert problem["type"].endswith("/busy")
    assert "busy" in problem["detail"] and "retry" in problem["detail"]
    assert waited < 2.5, "the request was held only for the bounded wait"
    with database.unit_of_work() as session:
        job = session.scalars(select(CADJob)).one()
        assert job.status is CADJobStatus.FAILED
        assert job.details["attempts"][0]["outcome"] == "busy"
        assert session.scalars(select(Notification)).first() is None


def test_a_failed_job_with_nobody_to_alert_says_so_instead_of_claiming_an_alert(
    container: bootstrap.Container, client: TestClient, operator: Person, database: Database
) -> None:
    # The operator has no email address and no recipients are configured: nobody to alert.
    answer = generate_with_a_starved_worker(container, client, operator, "a 20 mm cube")
    assert answer.status_code == 502
    detail = answer.json()["detail"]
    assert "has been alerted" not in detail
    assert "no operator could be alerted" in detail
    with database.unit_of_work() as session:
        assert session.scalars(select(Notification)).first() is None
        job_id = session.scalars(select(CADJob.id)).one()
    reply = progress_reply(container.cad.run_job(job_id))  # a finished job: as stored
    assert "has been alerted" not in reply
    assert "no operator could be alerted" in reply


def test_iterate_makes_a_linked_job_with_the_change_applied_and_compare_ranks_outputs(
    cad_client: TestClient, operator: Person
) -> None:
    first = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "enclosure 80 x 60 x 30 mm with 2 mm walls", "policyMode": "offline"},
        headers=operator.headers,
    ).json()
    answer = cad_client.post(
        f"/api/cad/jobs/{first['cadJobId']}/iterate",
        json={"followUp": "make it 5 mm taller"},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    second = answer.json()
    assert second["spec"]["params"]["height"] == 35
    stl = next(a for a in second["artifacts"] if a["artifactType"] == "stl")
    assert stl["metadata"]["bounding_box"]["z"] == pytest.approx(35, abs=0.01)
    job = cad_client.get(f"/api/cad/jobs/{second['cadJobId']}", headers=operator.headers).json()
    assert job["parentJobId"] == first["cadJobId"]

    compared = cad_client.get(
        f"/api/cad/jobs/{second['cadJobId']}/compare", headers=operator.headers
    ).json()
    assert [e["provider"] for e in compared["entries"]] == ["cadquery"]
    entry = compared["entries"][0]
    assert entry["previewUrl"].endswith("/download")
    assert entry["quality"]["components"]["bounding_box"] == 1.0
    assert len(entry["artifacts"]) == 3

    refused = cad_client.post(
        f"/api/cad/jobs/{first['cadJobId']}/iterate",
        json={"followUp": "make it 5000 mm taller"},
        headers=operator.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "spec.height"


def test_iterate_reads_bigger_and_names_followup_in_its_refusals(
    cad_client: TestClient, operator: Person
) -> None:
    first = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline"},
        headers=operator.headers,
    ).json()
    bigger = cad_client.post(
        f"/api/cad/jobs/{first['cadJobId']}/iterate",
        json={"followUp": "make it 5 mm bigger"},
        headers=operator.headers,
    )
    assert bigger.status_code == 202, bigger.text
    stl = next(a for a in bigger.json()["artifacts"] if a["artifactType"] == "stl")
    box = stl["metadata"]["bounding_box"]
    assert [box["x"], box["y"], box["z"]] == pytest.approx([25, 25, 25], abs=0.01)

    for unreadable in ("make it nicer", "open('/etc/passwd') 5 mm taller"):
        refused = cad_client.post(
            f"/api/cad/jobs/{first['cadJobId']}/iterate",
            json={"followUp": unreadable},
            headers=operator.headers,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "followUp"


def test_lineage_follows_artifact_to_its_jobs_and_the_print_it_became(
    cad_client: TestClient, operator: Person, database: Database
) -> None:
    first = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "rod 10 mm diameter 50 mm long", "policyMode": "offline"},
        headers=operator.headers,
    ).json()
    second = cad_client.post(
        f"/api/cad/jobs/{first['cadJobId']}/iterate",
        json={"followUp": "make it 10 mm longer"},
        headers=operator.headers,
    ).json()
    stl = next(a for a in second["artifacts"] if a["artifactType"] == "stl")
    with database.unit_of_work() as session:
        device_id = _any_device(session)
        printed = FabricationJob(
            device_id=device_id,
            cad_artifact_id=UUID(stl["id"]),
            gcode_path="gcode/rod.gcode",
            status=FabricationStatus.COMPLETED,
            requested_by=operator.user_id,
            started_at=utcnow(),
            completed_at=utcnow(),
        )
        session.add(printed)
        session.flush()
        session.add(
            PrintMonitorEvent(
                fabrication_job_id=printed.id,
                event_type=MonitorEventType.FIRST_LAYER_OK,
                confidence=0.93,
                occurred_at=utcnow(),
            )
        )
    lineage = cad_client.get(f"/api/cad/artifacts/{stl['id']}/lineage", headers=operator.headers)
    assert lineage.status_code == 200
    body = lineage.json()
    assert [j["id"] for j in body["jobs"]] == [second["cadJobId"], first["cadJobId"]]
    assert body["fabricationJobs"][0]["outcome"] == "completed"
    events = body["fabricationJobs"][0]["monitorEvents"]
    assert [(e["eventType"], e["confidence"]) for e in events] == [("first_layer_ok", 0.93)]
    assert (
        cad_client.get(
            f"/api/cad/artifacts/{UUID(int=0)}/lineage", headers=operator.headers
        ).status_code
        == 404
    )


def test_the_fit_is_scored_on_the_target_printers_bed(
    cad_client: TestClient, operator: Person, database: Database
) -> None:
    with database.unit_of_work() as session:
        small = _any_device(session, "printer-small", {"bed_mm": [100, 100, 100]})
        mk4 = _any_device(session, "printer-mk4", {"slicer_profile": "mk4-like"})
        plain = _any_device(session, "printer-plain", {})
        lamp = _any_device(session, "lamp", {}, kind=DeviceKind.LIGHT)

    def printability(printer: UUID | None) -> dict[str, object]:
        body: dict[str, object] = {"prompt": "a 120 x 40 x 5 plate", "policyMode": "offline"}
        if printer is not None:
            body["printerId"] = str(printer)
        answer = cad_client.post("/api/cad/generate", json=body, headers=operator.headers)
        assert answer.status_code == 202, answer.text
        stl = next(a for a in answer.json()["artifacts"] if a["artifactType"] == "stl")
        result: dict[str, object] = stl["metadata"]["quality"]["printability"]
        return result

    on_small = printability(small)
    assert on_small["fits_bed"] is False
    assert on_small["bed_mm"] == [100, 100, 100]
    assert on_small["bed_source"] == "printer bed_mm (Printer-Small)"
    on_mk4 = printability(mk4)
    assert on_mk4["fits_bed"] is True
    assert on_mk4["bed_mm"] == [250, 210, 220]
    assert on_mk4["bed_source"] == "slicer profile mk4-like (Printer-Mk4)"
    for default in (printability(plain), printability(None)):
        assert default["bed_mm"] == [256, 256, 256]
        assert str(default["bed_source"]).startswith("settings")

    not_a_printer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline", "printerId": str(lamp)},
        headers=operator.headers,
    )
    assert not_a_printer.status_code == 422
    assert not_a_printer.json()["field"] == "printerId"
    unknown = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline", "printerId": str(UUID(int=1))},
        headers=operator.headers,
    )
    assert unknown.status_code == 404


def test_a_rod_without_a_stated_wall_gets_its_wall_measured(
    cad_client: TestClient, operator: Person
) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "rod 10 mm diameter 50 mm long", "policyMode": "offline"},
        headers=operator.headers,
    )
    stl = next(a for a in answer.json()["artifacts"] if a["artifactType"] == "stl")
    printability = stl["metadata"]["quality"]["printability"]
    assert printability["min_wall_mm"] == pytest.approx(10, abs=0.1)
    assert printability["min_wall_source"].startswith("measured")


def test_provider_status_lists_cadquery_as_available_offline(
    cad_client: TestClient, operator: Person
) -> None:
    listed = cad_client.get("/api/cad/providers", headers=operator.headers).json()
    cadquery = next(p for p in listed if p["provider"] == "cadquery")
    assert cadquery == {"provider": "cadquery", "offline": True, "available": True, "reason": None}


def test_cad_routes_need_a_token(cad_client: TestClient) -> None:
    assert cad_client.post("/api/cad/generate", json={"prompt": "x"}).status_code == 401


def test_generating_needs_engineer_operator_or_admin_while_reading_is_open_to_everyone(
    cad_client: TestClient, operator: Person, safety_lead: Person, database: Database
) -> None:
    from tests.integration.conftest import _person

    engineer = _person(database, "eli", ["engineer"])
    cube = {"prompt": "a 20 mm cube", "policyMode": "offline"}
    made = cad_client.post("/api/cad/generate", json=cube, headers=engineer.headers)
    assert made.status_code == 202, made.text
    job = made.json()["cadJobId"]

    refused = cad_client.post("/api/cad/generate", json=cube, headers=safety_lead.headers)
    assert refused.status_code == 403
    assert "engineer or operator or admin" in refused.json()["detail"]
    again = cad_client.post(
        f"/api/cad/jobs/{job}/iterate",
        json={"followUp": "make it 5 mm taller"},
        headers=safety_lead.headers,
    )
    assert again.status_code == 403
    for path in (
        f"/api/cad/jobs/{job}",
        f"/api/cad/jobs/{job}/compare",
        "/api/cad/providers",
        f"/api/cad/artifacts/{made.json()['artifacts'][0]['id']}/lineage",
    ):
        assert cad_client.get(path, headers=safety_lead.headers).status_code == 200, path
    with database.unit_of_work() as session:
        assert len(session.scalars(select(CADJob)).all()) == 1


def _any_device(
    session: Session,
    external_id: str = "printer-lineage",
    attributes: dict[str, object] | None = None,
    kind: DeviceKind = DeviceKind.PRINTER,
) -> UUID:
    zone = Zone(name=f"bay for {external_id}", hazard_level=HazardLevel.LOW, requires_ppe=False)
    session.add(zone)
    session.flush()
    device = Device(
        external_id=external_id,
        integration="simulated",
        display_name=external_id.title(),
        kind=kind,
        zone_id=zone.id,
        capabilities={},
        attributes=attributes or {},
    )
    session.add(device)
    session.flush()
    return device.id


AMBIGUOUS_STAND = "phone stand 200 deep 60 wide 110 tall, 4 thick, at a 40 degree angle"


def test_an_ambiguous_prompt_says_which_reading_was_built_and_iterating_builds_the_other(
    cad_client: TestClient, operator: Person
) -> None:
    answer = cad_client.post(
        "/api/cad/generate",
        json={"prompt": AMBIGUOUS_STAND, "policyMode": "offline"},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["spec"]["params"]["angle"] == 40
    (reading,) = body["readings"]
    assert reading["phrase"] == "40 degree"
    assert "between the back and the base" in reading["taken"]
    assert reading["otherParams"] == {"angle": 50}
    other = cad_client.post(
        f"/api/cad/jobs/{body['cadJobId']}/iterate",
        json={"followUp": reading["followUp"], "policyMode": "offline"},
        headers=operator.headers,
    )
    assert other.status_code == 202, other.text
    assert other.json()["spec"]["params"]["angle"] == 50
    assert other.json()["readings"] == []
    # A plain prompt has no readings to offer.
    plain = cad_client.post(
        "/api/cad/generate",
        json={"prompt": "a 20 mm cube", "policyMode": "offline"},
        headers=operator.headers,
    )
    assert plain.json()["readings"] == []


def test_read_shows_the_grammars_reading_and_defaults_without_building_anything(
    cad_client: TestClient, operator: Person, database: Database
) -> None:
    read = cad_client.post("/api/cad/read", json={"prompt": ISSUE_PROMPT}, headers=operator.headers)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["understood"] is True
    assert body["spec"]["family"] == "mounting_plate"
    assert "hole_inset" in body["defaultsUsed"] and "length" not in body["defaultsUsed"]
    assert body["expectedBoundingBox"] == [60, 60, 4]

    unknown = cad_client.post(
        "/api/cad/read", json={"prompt": "a dragon figurine"}, headers=operator.headers
    ).json()
    assert (unknown["understood"], unknown["spec"]) == (False, None)
    assert unknown["reason"]
    contradictory = cad_client.post(
        "/api/cad/read",
        json={"prompt": "a 20 mm cube, 30 mm long and 20 mm long"},
        headers=operator.headers,
    )
    assert contradictory.status_code == 422
    assert contradictory.json()["field"] == "prompt"
    with database.unit_of_work() as session:
        assert session.scalars(select(CADJob)).first() is None


def test_generate_and_iterate_without_waiting_answer_queued_and_a_worker_builds_them(
    cad_client: TestClient, operator: Person, container: bootstrap.Container, database: Database
) -> None:
    """``wait: false`` (the studio's): the job is recorded and deferred to the job queue;
    the worker's run builds it. An iteration can ask for its own providers, compare and
    printer, as a new job would."""
    container.cad.queue = container.jobs.durable  # type: ignore[attr-defined]
    with database.unit_of_work() as session:
        printer = _any_device(session, "printer-studio", {"bed_mm": [200, 200, 200]})
    answer = cad_client.post(
        "/api/cad/generate",
        json={
            "prompt": "a 20 mm cube",
            "policyMode": "offline",
            "providers": ["cadquery"],
            "wait": False,
        },
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert (queued["status"], queued["artifacts"]) == ("queued", [])
    job_id = UUID(queued["cadJobId"])
    with database.engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT args->>'cad_job_id' FROM procrastinate_jobs WHERE status = 'todo'")
        ).scalars()
        assert str(job_id) in set(waiting)
    built = container.cad.run_job(job_id)  # what the worker's generate_cad task runs
    assert built.job.status is CADJobStatus.COMPLETED

    child = cad_client.post(
        f"/api/cad/jobs/{job_id}/iterate",
        json={
            "followUp": "make it 5 mm taller",
            "providers": ["cadquery"],
            "compare": True,
            "printerId": str(printer),
            "wait": False,
        },
        headers=operator.headers,
    )
    assert child.status_code == 202, child.text
    assert child.json()["status"] == "queued"
    child_id = UUID(child.json()["cadJobId"])
    taller = container.cad.run_job(child_id)
    assert taller.job.parent_job_id == job_id
    assert taller.job.details["compare"] is True
    assert taller.job.details["targetPrinter"]["bedMm"] == [200, 200, 200]
    stl = next(a for a in taller.artifacts if a.artifact_type.value == "stl")
    assert stl.metadata_["bounding_box"]["z"] == pytest.approx(25, abs=0.01)
