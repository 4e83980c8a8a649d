"""Every G-code that would reach a printer passes its G-code policy first: uploaded files,
the real PrusaSlicer's output (from an upload or a CAD artifact), and the G-code a 3MF
project carries. A refused file fails its job with the line and the reason, is never
stored as the job's G-code, and no print_start is ever sent for it."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trimesh
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.domain.enums import ArtifactType, FabricationStatus, OnlineState
from kittylab.domain.gcode_policy import DEFAULT_POLICY
from kittylab.services.cad import GenerateRequest, PolicyMode
from kittylab.services.gcode_gate import GcodeRefused, check_archive
from tests.integration.conftest import Person
from tests.integration.live_bus import live_lab
from tests.integration.test_print_jobs import job, lab, post_job, upload, work_queue

__all__ = ["lab"]  # the fixture, shared with the print job tests

HEADER = "; from a stranger\nG28\nG1 Z5 F3000\n"  # the forbidden line comes 4th

# (line 4 of the file, the command the refusal names, a fragment of the reason)
FORBIDDEN = [
    ("M104 S480", "M104", "nozzle 480 °C is above this printer's 290 °C limit"),
    ("M109 S480", "M109", "nozzle 480 °C"),
    ("M140 S200", "M140", "bed 200 °C is above this printer's 120 °C limit"),
    ("M141 S90", "M141", "chamber 90 °C"),
    ("SET_HEATER_TEMPERATURE HEATER=extruder TARGET=300", "SET_HEATER_TEMPERATURE", "300 °C"),
    ("M104 T1 S295", "M104", "nozzle 295 °C"),
    ("M302 P1", "M302", "cold extrusion"),
    ("M211 S0", "M211", "soft endstops off"),
    ("M500", "M500", "EEPROM"),
    ("M502", "M502", "factory defaults"),
    ("M503", "M503", "EEPROM"),
    ("M303 E0 S500", "M303", "PID autotune"),
    ("M997", "M997", "firmware update"),
    ("@pause", "@PAUSE", "host command"),
    ("SAVE_CONFIG", "SAVE_CONFIG", "configuration"),
    ("FIRMWARE_RESTART", "FIRMWARE_RESTART", "restarts"),
    ("_SECRET_MACRO", "_SECRET_MACRO", "is not a Klipper command or macro"),
]


def test_uploaded_gcode_breaking_the_policy_fails_with_its_line_and_is_never_started(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    printer = lab["prusa-mk4"]  # declares a 290 °C nozzle and a 120 °C bed
    bad_keys = [
        upload(client, operator, f"bad{i}.gcode", f"{HEADER}{line}\nG1 X10\n".encode())
        for i, (line, _, _) in enumerate(FORBIDDEN)
    ]
    good_key = upload(client, operator, "good.gcode", b"M140 S60\nM104 S215\nG28\nG1 X10\n")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        async with live_lab(container) as (_bus, fleet, wired):
            # The refused files are queued first: had any passed, it would print first.
            bad = [
                await asyncio.to_thread(post_job, client, operator, printer, key)
                for key in bad_keys
            ]
            good = await asyncio.to_thread(post_job, client, operator, printer, good_key)
            await work_queue(wired, database_url)
            await bootstrap.print_tracker(wired).round()
            return bad, good, fleet.devices[printer].snapshot()

    bad, good, printer_state = asyncio.run(scenario())
    for created, (line, command, reason) in zip(bad, FORBIDDEN, strict=True):
        refused = job(database, created["id"])
        assert refused.status is FabricationStatus.FAILED, line
        assert refused.details["reason"].startswith(
            f"G-code refused by the printer's G-code policy: line 4: {command}: "
        ), refused.details["reason"]
        assert reason in refused.details["reason"], refused.details["reason"]
        assert refused.details["gcode_violations"][0]["line"] == 4
        assert refused.details["gcode_violations"][0]["command"] == command
        assert "starting_at" not in refused.details
    assert job(database, good["id"]).status is FabricationStatus.PRINTING
    assert printer_state["file"] == "good.gcode"
    with database.unit_of_work() as s:
        starts = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start"))
        assert [c.payload["file"] for c in starts] == ["good.gcode"]


def test_a_file_the_printer_declares_is_accepted_and_its_limits_are_its_own(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    content = b"PRINT_START BED=110 EXTRUDER=250\nG1 X10\nM140 S115\nPRINT_END\n"
    key = upload(client, operator, "abs.gcode", content)
    voron = post_job(client, operator, lab["voron-24"], key)  # declares the macros, bed 115
    mk4 = post_job(client, operator, lab["prusa-mk4"], key)  # declares neither
    asyncio.run(work_queue(container, database_url))
    assert job(database, voron["id"]).details["stage"] in ("queued", "starting")
    refused = job(database, mk4["id"])
    assert refused.status is FabricationStatus.FAILED
    assert [v["line"] for v in refused.details["gcode_violations"]] == [1, 4]


def test_a_model_sliced_hotter_than_the_printer_allows_is_refused_and_not_kept(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    with database.unit_of_work() as s:  # PLA prints at 215 °C on a 60 °C bed
        mk4 = s.get(Device, lab["prusa-mk4"])
        voron = s.get(Device, lab["voron-24"])
        assert mk4 is not None and voron is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_nozzle_c": 200}}
        voron.attributes = {**voron.attributes, "gcode_policy": {"max_bed_c": 50}}
    cube = trimesh.creation.box(extents=(20, 20, 20)).export(file_type="stl")
    sliced = post_job(
        client, operator, lab["prusa-mk4"], upload(client, operator, "cube.stl", cube)
    )
    result = container.cad.generate(
        GenerateRequest(
            prompt="a 40 by 30 plate, 5 mm thick",
            policy_mode=PolicyMode.OFFLINE,
            requested_by=operator.user_id,
        )
    )
    stl = next(a for a in result.artifacts if a.artifact_type is ArtifactType.STL)
    answer = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["voron-24"]), "cadArtifactId": str(stl.id)},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text

    asyncio.run(work_queue(container, database_url))

    assert container.artifacts is not None
    for created, fragment in (
        (sliced, "M104: nozzle 215 °C is above this printer's 200 °C limit"),
        (answer.json(), "M140: bed 60 °C is above this printer's 50 °C limit"),
    ):
        refused = job(database, created["id"])
        assert refused.status is FabricationStatus.FAILED
        assert fragment in refused.details["reason"], refused.details["reason"]
        assert refused.details["gcode_violations"][0]["line"] > 1
        assert not container.artifacts.exists(refused.gcode_path)  # nothing refused is kept


def _project(plate: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("3D/3dmodel.model", "<model/>")
        archive.writestr("Metadata/plate_1.gcode", "G28\nG1 X1\n")
        archive.writestr("Metadata/plate_2.gcode", plate)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("plate", "fragment"),
    [
        ("G28\nM104 S250\nM500\n", "Metadata/plate_2.gcode: line 3: M500: writes"),
        ("G28\n" + "G1 X1 Y1\n" * 10 + "M104 S480\n", "line 12: M104: nozzle 480 °C"),
    ],
)
def test_gcode_inside_a_3mf_project_is_checked_before_anything_slices_it(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
    plate: str,
    fragment: str,
) -> None:
    key = upload(client, operator, "project.3mf", _project(plate))
    created = post_job(client, operator, lab["bambu-x1c"], key)
    asyncio.run(work_queue(container, database_url))
    refused = job(database, created["id"])
    assert refused.status is FabricationStatus.FAILED
    assert fragment in refused.details["reason"], refused.details["reason"]
    assert refused.details["gcode_violations"][0]["file"] == "Metadata/plate_2.gcode"


def test_a_3mf_whose_gcode_inflates_past_the_bound_is_refused(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kittylab.services import gcode_gate

    monkeypatch.setattr(gcode_gate, "MAX_ARCHIVE_GCODE_BYTES", 4 * 1024 * 1024)
    key = upload(client, operator, "bomb.3mf", _project("G1 X1\n" * 2_000_000))  # 12 MB
    created = post_job(client, operator, lab["bambu-x1c"], key)
    asyncio.run(work_queue(container, database_url))
    refused = job(database, created["id"])
    assert refused.status is FabricationStatus.FAILED
    assert "more than 4 MiB of G-code once decompressed" in refused.details["reason"]


def test_a_printer_whose_stored_policy_cannot_be_read_prints_nothing(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    with database.unit_of_work() as s:  # written past the manifest's validation
        mk4 = s.get(Device, lab["prusa-mk4"])
        assert mk4 is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_nozzle_c": "hot"}}
    created = post_job(client, operator, lab["prusa-mk4"], upload(client, operator, "a.gcode"))
    asyncio.run(work_queue(container, database_url))
    refused = job(database, created["id"])
    assert refused.status is FabricationStatus.FAILED
    assert "gcode_policy.max_nozzle_c" in refused.details["reason"]


def test_printer_heat_above_the_printers_declared_limit_is_422_naming_the_field(
    client: TestClient, operator: Person, lab: dict[str, UUID], database: Database
) -> None:
    with database.unit_of_work() as s:
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE

    def heat(printer: str, payload: dict[str, float]) -> Any:
        return client.post(
            f"/api/device/{lab[printer]}/command",
            json={"intent": "printer_heat", "payload": payload},
            headers=operator.headers,
        )

    # Within the intent's schema (nozzle ≤ 350, bed ≤ 150), past these printers' limits.
    too_hot = heat("prusa-mk4", {"nozzle": 300})
    assert (too_hot.status_code, too_hot.json()["field"]) == (422, "payload.nozzle")
    assert "290 °C nozzle limit" in too_hot.json()["detail"]
    bed = heat("voron-24", {"nozzle": 250, "bed": 116})
    assert (bed.status_code, bed.json()["field"]) == (422, "payload.bed")
    assert heat("prusa-mk4", {"nozzle": 290, "bed": 120}).status_code == 202
    with database.unit_of_work() as s:
        heats = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "printer_heat"))
        assert [c.payload for c in heats] == [{"nozzle": 290, "bed": 120}]
        mk4 = s.get(Device, lab["prusa-mk4"])
        assert mk4 is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_bed_c": "very"}}
    unreadable = heat("prusa-mk4", {"bed": 50})
    assert unreadable.status_code == 409
    assert "gcode_policy.max_bed_c" in unreadable.json()["detail"]
    cooldown = client.post(
        f"/api/device/{lab['prusa-mk4']}/command",
        json={"intent": "printer_cooldown"},
        headers=operator.headers,
    )
    assert cooldown.status_code == 202  # making a printer safer never needs its policy


def test_a_project_with_a_huge_table_of_contents_or_a_corrupt_plate_is_refused(
    tmp_path: Path,
) -> None:
    many = tmp_path / "many.3mf"
    with zipfile.ZipFile(many, "w") as archive:  # 1.3 MB of entry names, no G-code
        for i in range(12_000):
            archive.writestr(f"Metadata/{'x' * 60}-{i}.png", b"")
    with pytest.raises(GcodeRefused) as refusal:
        check_archive(many, DEFAULT_POLICY)
    assert "table of contents" in str(refusal.value)

    corrupt = tmp_path / "corrupt.3mf"
    with zipfile.ZipFile(corrupt, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Metadata/plate_1.gcode", "G28\n" * 1000)
    corrupt.write_bytes(corrupt.read_bytes().replace(b"G28\nG28", b"G28\nG29", 1))
    with pytest.raises(GcodeRefused) as refusal:  # its checksum no longer matches
        check_archive(corrupt, DEFAULT_POLICY)
    assert str(refusal.value).startswith("Metadata/plate_1.gcode: it cannot be read (")

    not_an_archive = tmp_path / "plain.3mf"
    not_an_archive.write_bytes(b"solid cube\nendsolid cube\n")
    assert check_archive(not_an_archive, DEFAULT_POLICY) == 0
    assert check_archive(_write(tmp_path / "ok.3mf", _project("G28\n")), DEFAULT_POLICY) == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
