"""Issue 16, projects: ``/api/projects`` groups conversations, CAD jobs, artifacts and print
jobs, reads what follows from them (a conversation's CAD jobs, their artifacts, the prints
of those), sums up what was made and how it printed, and names the field of bad input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import CADArtifact, CADJob, Device, FabricationJob
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADPolicyMode,
    CADProvider,
    DeviceKind,
    FabricationStatus,
)
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.conftest import Person, _person


@pytest.fixture
def demo(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> None:
    manifest = replace(load_manifest(demo_lab_path), users=())
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())


def _made_in(database: Database, conversation: str, person: Person) -> tuple[UUID, UUID, UUID]:
    """A CAD job talked through in ``conversation``, its STL, and two prints of it."""
    with database.unit_of_work() as s:
        job = CADJob(
            conversation_id=UUID(conversation),
            prompt="a 40 mm cable clip",
            policy_mode=CADPolicyMode.OFFLINE,
            status=CADJobStatus.COMPLETED,
            requested_by=person.user_id,
        )
        s.add(job)
        s.flush()
        artifact = CADArtifact(
            cad_job_id=job.id,
            provider=CADProvider.CADQUERY,
            artifact_key=f"cad/{job.id}/clip.stl",
            artifact_type=ArtifactType.STL,
            metadata_={"bounding_box": [], "material_hints": [], "generation_params": {}},
        )
        s.add(artifact)
        s.flush()
        printer = s.scalar(select(Device.id).where(Device.kind == DeviceKind.PRINTER).limit(1))
        assert printer is not None
        for outcome in (FabricationStatus.COMPLETED, FabricationStatus.FAILED):
            s.add(
                FabricationJob(
                    device_id=printer,
                    cad_artifact_id=artifact.id,
                    gcode_path=f"gcode/{outcome.value}.gcode",
                    status=outcome,
                    requested_by=person.user_id,
                )
            )
        s.flush()
        return job.id, artifact.id, printer


def _create(client: TestClient, person: Person, **body: Any) -> Any:
    return client.post("/api/projects", json=body, headers=person.headers)


def test_a_project_gathers_what_its_conversation_made_and_how_it_printed(
    container: bootstrap.Container, client: TestClient, demo: None, operator: Person
) -> None:
    talk = client.post(
        "/api/query", json={"channel": "cli", "input": {"text": "what can you do"}},
        headers=operator.headers,
    ).json()["conversationId"]  # fmt: skip
    job, artifact, _ = _made_in(container.database, talk, operator)
    created = _create(client, operator, name="Cable clips", conversationIds=[talk])
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["conversationIds"] == [talk]
    assert project["cadJobIds"] == [str(job)]
    assert project["artifactIds"] == [str(artifact)]
    assert len(project["printJobIds"]) == 2
    summary = project["summary"]
    assert summary["printJobs"] == {"completed": 1, "failed": 1}
    assert summary["cadJobs"] == {"completed": 1}
    assert summary["artifacts"] == {"stl": 1}
    assert "2 print job(s) (1 completed, 1 failed)" in summary["text"]

    container.artifacts.put_bytes("uploads/clip-photo.jpg", b"\xff\xd8", content_type="image/jpeg")
    url = f"/api/projects/{project['id']}/artifacts"
    added = client.post(url, json={"key": "uploads/clip-photo.jpg"}, headers=operator.headers)
    assert added.status_code == 201, added.text
    assert added.json()["artifactKeys"] == ["uploads/clip-photo.jpg"]
    again = client.post(url, json={"key": "uploads/clip-photo.jpg"}, headers=operator.headers)
    assert again.status_code == 200

    patched = client.patch(
        f"/api/projects/{project['id']}",
        json={"name": "Cable clips v2", "description": None},
        headers=operator.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Cable clips v2"
    listed = client.get("/api/projects", headers=operator.headers).json()["items"]
    assert [p["id"] for p in listed] == [project["id"]]
    gone = client.delete(f"/api/projects/{project['id']}", headers=operator.headers)
    assert gone.status_code == 204
    assert client.get(f"/api/projects/{project['id']}", headers=operator.headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({}, "name"),
        (
            {"name": "x", "conversationIds": ["0190f2c5-0000-7000-8000-000000000000"]},
            "conversationIds.0",
        ),
        ({"name": "x", "printJobIds": ["not-an-id"]}, "printJobIds.0"),
        ({"name": "x", "cadJobIds": ["0190f2c5-0000-7000-8000-000000000000"]}, "cadJobIds.0"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_project_input_names_the_field(
    client: TestClient, demo: None, operator: Person, body: dict[str, Any], field: str
) -> None:
    r = _create(client, operator, **body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_only_the_creator_or_an_admin_changes_a_project_and_conversations_stay_private(
    client: TestClient, demo: None, operator: Person, admin: Person, database: Database
) -> None:
    other = _person(database, "eve", ["engineer"])
    talk = client.post(
        "/api/query", json={"channel": "cli", "input": {"text": "what can you do"}},
        headers=operator.headers,
    ).json()["conversationId"]  # fmt: skip
    refused = _create(client, other, name="Spy", conversationIds=[talk])
    assert refused.status_code == 403
    project = _create(client, operator, name="Mine").json()
    url = f"/api/projects/{project['id']}"
    assert client.get(url, headers=other.headers).status_code == 200  # shared record
    assert client.patch(url, json={"name": "Theirs"}, headers=other.headers).status_code == 403
    artifacts = client.post(f"{url}/artifacts", json={"key": "a.stl"}, headers=other.headers)
    assert artifacts.status_code == 403
    both = client.post(
        f"{url}/artifacts",
        json={"key": "a.stl", "artifactId": "0190f2c5-0000-7000-8000-000000000000"},
        headers=operator.headers,
    )
    assert both.status_code == 422 and both.json()["field"] == "artifactId"
    missing = client.post(f"{url}/artifacts", json={"key": "no/such.stl"}, headers=operator.headers)
    assert missing.status_code == 422 and missing.json()["field"] == "key"
    escape = client.post(
        f"{url}/artifacts", json={"key": "../etc/passwd"}, headers=operator.headers
    )
    assert escape.status_code == 422 and escape.json()["field"] == "key"
    assert client.delete(url, headers=admin.headers).status_code == 204
