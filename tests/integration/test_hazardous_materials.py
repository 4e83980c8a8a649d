"""Hazardous print materials (issue 13): a job's material is flagged in every view, and a
zone policy holds such a job until the zone's fume extraction is on, or refuses it without
the PPE the policy names."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab.adapters.db.tables import Device
from kittylab.api.app import create_app
from kittylab.cli.main import app
from kittylab.devices import telemetry
from kittylab.domain.enums import OnlineState
from kittylab.manifest import apply_manifest
from kittylab.manifest.model import build_manifest
from tests.integration.api_server import served
from tests.integration.print_lab import GCODE, PrintLab

ABS_GCODE = GCODE + (
    b"; filament used [mm] = 120.5\n; filament used [cm3] = 0.29\n"
    b"; estimated printing time (normal mode) = 2m 10s\n; filament_type = ABS\n"
)
"""G-code as PrusaSlicer writes it from an ABS filament profile (its summary comments)."""


def farm_policy(lab: PrintLab, demo_lab_path: Path, rule: dict[str, Any]) -> None:
    """The demo lab plus a fume extractor in the print farm (declared by its role) and a
    print-farm policy with ``rule`` for hazardous materials; every device online."""
    data = yaml.safe_load(demo_lab_path.read_text())
    data["devices"].append(
        {
            "external_id": "farm-extraction",
            "kind": "power",
            "zone": "print-farm",
            "aliases": ["farm fume extraction"],
            "attributes": {"role": "fume_extraction"},
        }
    )
    data["policies"].append(
        {
            "name": "print-farm-materials",
            "zone": "print-farm",
            "required_roles": ["safety"],
            "hazardous_materials": rule,
        }
    )
    with lab.database.unit_of_work() as s:
        apply_manifest(s, build_manifest(data), lab.container.clock())
    with lab.database.unit_of_work() as s:
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE


def extraction(lab: PrintLab, on: bool) -> None:
    with lab.database.unit_of_work() as s:
        fan = s.scalars(select(Device).where(Device.external_id == "farm-extraction")).one()
        event = telemetry.IncomingEvent(fan.id, None, "state", {"on": on, "watts": 0.0}, None)
        telemetry.store_batch(s, [event], lab.container.clock())


def create(lab: PrintLab, key: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    answer = lab.client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": key, **extra},
        headers=lab.operator.headers,
    )
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


def test_an_abs_job_waits_for_the_zones_fume_extraction_and_starts_once_it_is_on(
    lab: PrintLab, demo_lab_path: Path
) -> None:
    farm_policy(lab, demo_lab_path, {"fume_extraction": True})
    extraction(lab, on=False)
    status, job = create(lab, lab.upload("box.gcode"), material="ABS")
    assert status == 202, job
    assert job["hazardousMaterials"] == ["styrene"]
    assert job["details"]["hazardous_materials"]["materials"] == ["ABS"]

    asyncio.run(lab.work_queue())
    waiting = lab.job(job["id"])
    assert waiting.origin_command_id is None  # nothing was sent to the printer
    assert waiting.details["stage"] == "queued"
    assert (
        "needs the fume extraction of print-farm on (farm-extraction is off)"
        in (waiting.details["waiting_for"])
    )
    seen = lab.client.get(f"/api/fabrication/jobs/{job['id']}", headers=lab.operator.headers)
    assert seen.json()["hazardousMaterials"] == ["styrene"]

    extraction(lab, on=True)
    lab.container.jobs.defer_start_next(lab["prusa-mk4"])  # the minutely look, now
    asyncio.run(lab.work_queue())
    started = lab.job(job["id"])
    assert started.origin_command_id is not None, started.details  # its print_start was asked


def test_the_gcodes_filament_profile_flags_the_job_too(lab: PrintLab, demo_lab_path: Path) -> None:
    farm_policy(lab, demo_lab_path, {"fume_extraction": True})
    status, job = create(lab, lab.upload("anon.gcode", ABS_GCODE))
    assert status == 202 and job["hazardousMaterials"] == []  # nothing said yet
    asyncio.run(lab.work_queue())
    prepared = lab.job(job["id"])
    assert prepared.details["filament_type"] == "ABS"
    assert prepared.details["hazardous_materials"]["classes"] == ["styrene"]
    assert "needs the fume extraction of print-farm on" in prepared.details["waiting_for"]
    seen = lab.client.get(f"/api/fabrication/jobs/{job['id']}", headers=lab.operator.headers)
    assert seen.json()["hazardousMaterials"] == ["styrene"]


def test_a_policy_asking_for_ppe_refuses_a_hazardous_job_without_it(
    lab: PrintLab, demo_lab_path: Path
) -> None:
    farm_policy(lab, demo_lab_path, {"ppe": ["respirator"]})
    key = lab.upload("part.gcode")
    status, refused = create(lab, key, material="PA6-CF")
    assert status == 422, refused
    assert "ppeConfirmed" in str(refused) and "respirator" in str(refused)
    status, job = create(lab, key, material="PA6-CF", ppeConfirmed=["respirator"])
    assert status == 202 and job["hazardousMaterials"] == ["nylon", "fibre"]
    status, plain = create(lab, key, material="PLA")
    assert status == 202 and plain["hazardousMaterials"] == []


def test_kittylab_jobs_shows_the_flag(lab: PrintLab, demo_lab_path: Path) -> None:
    farm_policy(lab, demo_lab_path, {"fume_extraction": True})
    create(lab, lab.upload("resin.gcode"), material="Standard Resin")
    with served(create_app(lab.container)) as port:
        env = {"KITTYLAB_URL": f"http://127.0.0.1:{port}", "KITTYLAB_TOKEN": lab.operator.token}
        shown = CliRunner().invoke(app, ["jobs"], env={**env, "COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "resin" in shown.output
