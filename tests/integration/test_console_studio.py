"""The console's CAD studio on PostgreSQL (issue 18, item 1), from records as the CAD
service writes them: each provider's state on a running and a finished job, the result
side by side with its size against the request, thinnest wall and the printers it fits,
the lineage from the first prompt through an iteration to a print and its outcome, the
grammar's reading before generating, and no controls from outside the lab's networks.
(Generated parts in a real browser: tests/e2e/test_console_studio.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    Device,
    FabricationJob,
    PrintMonitorEvent,
    Zone,
)
from kittylab.api.app import create_app
from kittylab.api.web_auth import SESSION_COOKIE, limits
from kittylab.cad.fit import fits, printer_beds
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADPolicyMode,
    CADProvider,
    DeviceKind,
    FabricationStatus,
    HazardLevel,
    MonitorEventType,
)
from kittylab.people import web_sessions
from kittylab.web import studio
from tests.integration.conftest import Person

PROMPT = "a 200 by 40 mounting plate, 4 mm thick"
SPEC = {
    "family": "mounting_plate",
    "params": {"length": 200.0, "width": 40.0, "thickness": 4.0},
    "defaults": ["hole_inset", "fillet"],
    "notes": [],
    "readings": [],
}


@dataclass(frozen=True)
class Parts:
    first: UUID
    taller: UUID
    stl: UUID
    small: UUID
    big: UUID


def _artifacts(job_id: UUID, provider: CADProvider, z: float) -> list[CADArtifact]:
    quality: dict[str, Any] = {
        "mesh": {"watertight": True, "manifold": True},
        "bounding_box": {
            "expected_mm": [200, 40, z],
            "actual_mm": [200, 40, z],
            "max_deviation_mm": 0.0,
            "within_tolerance": True,
        },
        "printability": {
            "fits_bed": True,
            "bed_mm": [256, 256, 256],
            "bed_source": "settings",
            "overhang_share": 0.0,
            "min_wall_mm": z,
            "min_wall_source": "spec",
            "min_wall_ok": True,
        },
        "components": {"solid_valid": 1.0, "mesh": 1.0, "bounding_box": 1.0},
        "weights": {"solid_valid": 0.25, "mesh": 0.25, "bounding_box": 0.2},
    }
    meta = {
        "bounding_box": {"x": 200.0, "y": 40.0, "z": z, "expected": [200, 40, z], "units": "mm"},
        "material_hints": ["PLA", "PETG"],
        "generation_params": {"spec": SPEC, "defaults_used": ["hole_inset"]},
        "model_version": f"{provider.value} 1.0",
        "quality": quality,
        "size_bytes": 2048,
    }
    return [
        CADArtifact(
            cad_job_id=job_id,
            provider=provider,
            artifact_key=f"cad/{job_id}/{provider.value}/{name}",
            artifact_type=kind,
            metadata_=meta,
            quality_score=0.97,
        )
        for kind, name in (
            (ArtifactType.STEP, "part.step"),
            (ArtifactType.STL, "part.stl"),
            (ArtifactType.PREVIEW, "preview.png"),
        )
    ]


@pytest.fixture
def parts(database: Database, operator: Person) -> Parts:
    """A finished comparison (CadQuery built the part, FreeCAD failed), an iteration of
    it still running, a print of the first part that completed, and two printers: one
    whose bed is too small for the 200 mm part."""
    with database.unit_of_work() as s:
        zone = Zone(name="farm", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        small = Device(
            external_id="mini", integration="simulated", display_name="Mini",
            kind=DeviceKind.PRINTER, zone_id=zone.id, attributes={"bed_mm": [180, 180, 180]},
        )  # fmt: skip
        big = Device(
            external_id="big", integration="simulated", display_name="Big",
            kind=DeviceKind.PRINTER, zone_id=zone.id, attributes={},
        )  # fmt: skip
        s.add_all([small, big])
        first = CADJob(
            prompt=PROMPT, policy_mode=CADPolicyMode.OFFLINE, status=CADJobStatus.COMPLETED,
            requested_by=operator.user_id, completed_at=datetime.now(UTC),
            details={
                "spec": SPEC, "expectedBoundingBox": [200, 40, 4], "compare": True,
                "plannedProviders": ["cadquery", "freecad"], "requestedPolicy": "offline",
                "attempts": [
                    {"provider": "cadquery", "outcome": "succeeded", "seconds": 1.5},
                    {"provider": "freecad", "outcome": "failed", "error": "RuntimeError: boom"},
                ],
            },
        )  # fmt: skip
        s.add(first)
        s.flush()
        stored = _artifacts(first.id, CADProvider.CADQUERY, 4.0)
        s.add_all(stored)
        taller = CADJob(
            prompt=f"{PROMPT}{studio.FOLLOW_UP_MARK}make it 5 mm taller",
            policy_mode=CADPolicyMode.OFFLINE, status=CADJobStatus.RUNNING,
            requested_by=operator.user_id, parent_job_id=first.id,
            details={
                "spec": {**SPEC, "params": {**SPEC["params"], "thickness": 9.0}},
                "compare": True, "plannedProviders": ["cadquery", "freecad"],
                "currentProvider": "cadquery", "requestedPolicy": "offline",
            },
        )  # fmt: skip
        s.add(taller)
        s.flush()
        stl = next(a for a in stored if a.artifact_type is ArtifactType.STL)
        printed = FabricationJob(
            device_id=big.id, cad_artifact_id=stl.id, gcode_path="fabrication/p.gcode",
            requested_by=operator.user_id, status=FabricationStatus.COMPLETED,
            completed_at=datetime.now(UTC),
        )  # fmt: skip
        s.add(printed)
        s.flush()
        s.add(
            PrintMonitorEvent(
                fabrication_job_id=printed.id, event_type=MonitorEventType.FIRST_LAYER_OK,
                confidence=0.9, details={}, occurred_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )  # fmt: skip
        return Parts(first.id, taller.id, stl.id, small.id, big.id)


def test_a_part_fits_a_bed_laid_on_any_side() -> None:
    assert fits((200, 40, 4), (256, 256, 256))
    assert fits((40, 4, 200), (210, 210, 250))  # stood up: the tallest side is the bed's Z
    assert not fits((200, 40, 4), (180, 180, 180))


def test_each_providers_result_says_its_state_size_wall_and_the_printers_it_fits(
    container: bootstrap.Container, database: Database, parts: Parts
) -> None:
    with database.unit_of_work() as s:
        beds = printer_beds(s, None, container.settings.cad.bed_mm)
        done = studio.read_job(s, parts.first, beds)
        running = studio.read_job(s, parts.taller, beds)
    assert [b.name for b in beds] == ["Big", "Mini"]
    assert [b.bed_mm for b in beds] == [(256, 256, 256), (180, 180, 180)]
    cadquery, freecad = done.results
    assert (cadquery.state, cadquery.score, cadquery.seconds) == ("done", 0.97, 1.5)
    assert cadquery.bbox == (200, 40, 4) and cadquery.expected == (200, 40, 4)
    assert (cadquery.min_wall_mm, cadquery.min_wall_ok) == (4.0, True)
    assert [(p.name, p.fits) for p in cadquery.printers] == [("Big", True), ("Mini", False)]
    assert cadquery.stl is not None and cadquery.stl.url.endswith("/download")
    assert [f.kind for f in cadquery.files] == ["step", "stl"]
    assert (freecad.state, freecad.error) == ("failed", "RuntimeError: boom")
    assert done.finished and done.progress == 1.0 and done.best is cadquery
    assert [r.state for r in running.results] == ["building", "waiting"]
    assert running.progress == 0.0
    assert running.follow_up == "make it 5 mm taller"


def test_the_lineage_runs_from_the_prompt_through_the_iteration_to_the_print(
    database: Database, parts: Parts
) -> None:
    with database.unit_of_work() as s:
        from_child = studio.read_lineage(s, parts.taller)
        from_first = studio.read_lineage(s, parts.first)
    assert [(step.words, step.current) for step in from_child.steps] == [
        (PROMPT, False),
        ("make it 5 mm taller", True),
    ]
    printed = from_child.steps[0].prints
    assert [(p.printer, p.provider, p.outcome, p.events) for p in printed] == [
        ("Big", "cadquery", "completed", ("first_layer_ok",))
    ]
    assert [c.words for c in from_first.children] == ["make it 5 mm taller"]


def _signed_in(client: TestClient, container: bootstrap.Container, person: Person) -> None:
    with container.database.unit_of_work() as s:
        issued = web_sessions.start(
            s, person.user_id, passkey_id=None, limits=limits(container.settings.console),
            now=container.clock(),
        )  # fmt: skip
    client.cookies.set(SESSION_COOKIE, issued.token)


LOCAL = {"Host": "localhost"}


def test_the_pages_show_the_results_the_reading_and_the_live_parts(
    client: TestClient, container: bootstrap.Container, parts: Parts, operator: Person
) -> None:
    _signed_in(client, container, operator)
    page = client.get(f"/studio/jobs/{parts.first}", headers=LOCAL)
    assert page.status_code == 200, page.text
    html = page.text
    assert "200 × 40 × 4 mm" in html and "✓ within 0.1 mm" in html
    assert "too big for Mini" in html
    assert f'data-stl="/api/cad/artifacts/{parts.stl}/download"' in html
    assert "Send to printer" in html and 'id="iterate-form"' in html
    assert "three.module.min.js" in html  # three.js: on this page only
    assert "RuntimeError: boom" in html

    progress = client.get(f"/console/studio/jobs/{parts.taller}/progress", headers=LOCAL)
    assert 'hx-trigger="every 1.0s"' in progress.text and "building with" in progress.text
    finished = client.get(f"/console/studio/jobs/{parts.first}/progress", headers=LOCAL)
    assert "hx-trigger" not in finished.text
    assert finished.headers["HX-Trigger"] == "lineage-changed"
    slot = client.get(f"/console/studio/jobs/{parts.taller}/results/freecad", headers=LOCAL)
    assert "Waiting for its turn" in slot.text and "hx-trigger" in slot.text
    missing = client.get(f"/console/studio/jobs/{parts.taller}/results/zoo", headers=LOCAL)
    assert missing.status_code == 404

    reading = client.get(
        "/console/studio/read",
        params={"prompt": "a 60 by 40 mounting plate, 4 mm thick, four M4 holes"},
        headers=LOCAL,
    ).text
    assert "A mounting plate" in reading and "60 × 40 × 4 mm overall" in reading
    assert "hole inset" in reading and "assumed" in reading
    unknown = client.get("/console/studio/read", params={"prompt": "a dragon"}, headers=LOCAL)
    assert "Not a part of the library" in unknown.text
    refused = client.get(
        "/console/studio/read", params={"prompt": "a cube 20 mm long and 30 mm long"}, headers=LOCAL
    )
    assert "Cannot build this" in refused.text

    studio_page = client.get("/studio", headers=LOCAL).text
    assert 'id="generate-form"' in studio_page and "three.module" not in studio_page
    assert "make it 5 mm taller" in studio_page  # the newest parts


@pytest.fixture
def remote_client(container: bootstrap.Container) -> Iterator[TestClient]:
    with TestClient(
        create_app(container), raise_server_exceptions=False, client=("203.0.113.7", 50000)
    ) as c:
        yield c


def test_from_outside_the_lab_the_studio_shows_parts_without_controls(
    remote_client: TestClient, container: bootstrap.Container, parts: Parts, operator: Person
) -> None:
    _signed_in(remote_client, container, operator)
    page = remote_client.get(f"/studio/jobs/{parts.first}", headers=LOCAL)
    assert page.status_code == 200
    assert "Read-only here" in page.text
    assert "Send to printer" not in page.text and 'id="iterate-form"' not in page.text
    assert 'id="generate-form"' not in remote_client.get("/studio", headers=LOCAL).text
