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

import pytest
import trimesh
from sqlalchemy import select

from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.domain.enums import FabricationStatus, OnlineState
from kittylab.domain.gcode_policy import DEFAULT_POLICY
from kittylab.fabrication.gcode_gate import GcodeRefused, check_archive
from tests.integration.live_bus import live_lab
from tests.integration.print_lab import PrintLab

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
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]  # declares a 290 °C nozzle and a 120 °C bed
    bad_keys = [
        lab.upload(f"bad{i}.gcode", f"{HEADER}{line}\nG1 X10\n".encode())
        for i, (line, _, _) in enumerate(FORBIDDEN)
    ]
    good_key = lab.upload("good.gcode", b"M140 S60\nM104 S215\nG28\nG1 X10\n")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            # The refused files are queued first: had any passed, it would print first.
            bad = [await asyncio.to_thread(lab.post_job, printer, key) for key in bad_keys]
            good = await lab.start(wired, printer, good_key)
            return bad, good, fleet.devices[printer].snapshot()

    bad, good, printer_state = asyncio.run(scenario())
    for created, (line, command, reason) in zip(bad, FORBIDDEN, strict=True):
        refused = lab.job(created["id"])
        assert refused.status is FabricationStatus.FAILED, line
        assert refused.details["reason"].startswith(
            f"G-code refused by the printer's G-code policy: line 4: {command}: "
        ), refused.details["reason"]
        assert reason in refused.details["reason"], refused.details["reason"]
        assert refused.details["gcode_violations"][0]["line"] == 4
        assert refused.details["gcode_violations"][0]["command"] == command
        assert "starting_at" not in refused.details
    assert lab.job(good["id"]).status is FabricationStatus.PRINTING
    assert printer_state["file"] == "good.gcode"
    with lab.database.unit_of_work() as s:
        starts = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start"))
        assert [c.payload["file"] for c in starts] == ["good.gcode"]


def test_a_file_the_printer_declares_is_accepted_and_its_limits_are_its_own(
    lab: PrintLab,
) -> None:
    content = b"PRINT_START BED=110 EXTRUDER=250\nG1 X10\nM140 S115\nPRINT_END\n"
    key = lab.upload("abs.gcode", content)
    voron = lab.post_job(lab["voron-24"], key)  # declares the macros, bed 115
    mk4 = lab.post_job(lab["prusa-mk4"], key)  # declares neither
    asyncio.run(lab.work_queue())
    assert lab.job(voron["id"]).details["stage"] in ("queued", "starting")
    refused = lab.job(mk4["id"])
    assert refused.status is FabricationStatus.FAILED
    assert [v["line"] for v in refused.details["gcode_violations"]] == [1, 4]


def test_a_model_sliced_hotter_than_the_printer_allows_is_refused_and_not_kept(
    lab: PrintLab,
) -> None:
    with lab.database.unit_of_work() as s:  # PLA prints at 215 °C on a 60 °C bed
        mk4 = s.get(Device, lab["prusa-mk4"])
        voron = s.get(Device, lab["voron-24"])
        assert mk4 is not None and voron is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_nozzle_c": 200}}
        voron.attributes = {**voron.attributes, "gcode_policy": {"max_bed_c": 50}}
    cube = trimesh.creation.box(extents=(20, 20, 20)).export(file_type="stl")
    sliced = lab.post_job(lab["prusa-mk4"], lab.upload("cube.stl", cube))
    _, from_cad = lab.post_cad_job(lab["voron-24"])

    asyncio.run(lab.work_queue())

    assert lab.container.artifacts is not None
    for created, fragment in (
        (sliced, "M104: nozzle 215 °C is above this printer's 200 °C limit"),
        (from_cad, "M140: bed 60 °C is above this printer's 50 °C limit"),
    ):
        refused = lab.job(created["id"])
        assert refused.status is FabricationStatus.FAILED
        assert fragment in refused.details["reason"], refused.details["reason"]
        assert refused.details["gcode_violations"][0]["line"] > 1
        assert not lab.container.artifacts.exists(refused.gcode_path)  # nothing refused is kept


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
    lab: PrintLab,
    plate: str,
    fragment: str,
) -> None:
    refused = lab.prepared(lab["bambu-x1c"], lab.upload("project.3mf", _project(plate)))
    assert refused.status is FabricationStatus.FAILED
    assert fragment in refused.details["reason"], refused.details["reason"]
    assert refused.details["gcode_violations"][0]["file"] == "Metadata/plate_2.gcode"


def test_a_3mf_whose_gcode_inflates_past_the_bound_is_refused(
    lab: PrintLab,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kittylab.fabrication import gcode_gate

    monkeypatch.setattr(gcode_gate, "MAX_ARCHIVE_GCODE_BYTES", 4 * 1024 * 1024)
    key = lab.upload("bomb.3mf", _project("G1 X1\n" * 2_000_000))  # 12 MB
    refused = lab.prepared(lab["bambu-x1c"], key)
    assert refused.status is FabricationStatus.FAILED
    assert "more than 4 MiB of G-code once decompressed" in refused.details["reason"]


def test_a_printer_whose_stored_policy_cannot_be_read_prints_nothing(
    lab: PrintLab,
) -> None:
    with lab.database.unit_of_work() as s:  # written past the manifest's validation
        mk4 = s.get(Device, lab["prusa-mk4"])
        assert mk4 is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_nozzle_c": "hot"}}
    refused = lab.prepared(lab["prusa-mk4"], lab.upload("a.gcode"))
    assert refused.status is FabricationStatus.FAILED
    assert "gcode_policy.max_nozzle_c" in refused.details["reason"]


def test_printer_heat_above_the_printers_declared_limit_is_422_naming_the_field(
    lab: PrintLab,
) -> None:
    with lab.database.unit_of_work() as s:
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE

    def heat(printer: str, payload: dict[str, float]) -> Any:
        return lab.client.post(
            f"/api/device/{lab[printer]}/command",
            json={"intent": "printer_heat", "payload": payload},
            headers=lab.operator.headers,
        )

    # Within the intent's schema (nozzle ≤ 350, bed ≤ 150), past these printers' limits.
    too_hot = heat("prusa-mk4", {"nozzle": 300})
    assert (too_hot.status_code, too_hot.json()["field"]) == (422, "payload.nozzle")
    assert "290 °C nozzle limit" in too_hot.json()["detail"]
    bed = heat("voron-24", {"nozzle": 250, "bed": 116})
    assert (bed.status_code, bed.json()["field"]) == (422, "payload.bed")
    assert heat("prusa-mk4", {"nozzle": 290, "bed": 120}).status_code == 202
    with lab.database.unit_of_work() as s:
        heats = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "printer_heat"))
        assert [c.payload for c in heats] == [{"nozzle": 290, "bed": 120}]
        mk4 = s.get(Device, lab["prusa-mk4"])
        assert mk4 is not None
        mk4.attributes = {**mk4.attributes, "gcode_policy": {"max_bed_c": "very"}}
    unreadable = heat("prusa-mk4", {"bed": 50})
    assert unreadable.status_code == 409
    assert "gcode_policy.max_bed_c" in unreadable.json()["detail"]
    cooldown = lab.client.post(
        f"/api/device/{lab['prusa-mk4']}/command",
        json={"intent": "printer_cooldown"},
        headers=lab.operator.headers,
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
