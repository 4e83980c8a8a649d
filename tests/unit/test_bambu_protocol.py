"""The Bambu driver's pure protocol code: report normalization and merging, the request an
intent becomes, and the connection mapping. No broker needed (see the integration tests)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from kittylab.adapters.devices import bambu_ftps
from kittylab.adapters.devices.bambu import BambuConnection
from kittylab.adapters.devices.bambu_protocol import merge_report, normalize, request_for
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.device_state import PrinterPhase
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, ValidationFailed


@pytest.mark.parametrize(
    ("gcode_state", "phase"),
    [
        ("IDLE", PrinterPhase.IDLE),
        ("SLICING", PrinterPhase.HEATING),
        ("PREPARE", PrinterPhase.HEATING),
        ("RUNNING", PrinterPhase.PRINTING),
        ("PAUSE", PrinterPhase.PAUSED),
        ("FINISH", PrinterPhase.COMPLETED),
        ("FAILED", PrinterPhase.FAILED),
    ],
)
def test_every_documented_gcode_state_maps_to_a_printer_phase(
    gcode_state: str, phase: PrinterPhase
) -> None:
    assert normalize({"gcode_state": gcode_state})["state"] == phase.value


def test_failed_with_the_cancel_error_code_reads_as_cancelled_without_a_failure() -> None:
    state = normalize({"gcode_state": "FAILED", "print_error": 50348044})
    assert state["state"] == "cancelled"
    assert state["failure"] is None
    # Some firmware only keeps the code in fail_reason, as a string.
    assert normalize({"gcode_state": "FAILED", "fail_reason": "50348044"})["state"] == "cancelled"


def test_failed_with_another_error_names_the_code_as_bambu_tools_show_it() -> None:
    state = normalize({"gcode_state": "FAILED", "print_error": 0x07008002})
    assert state == {"state": "failed", "failure": "print error 0700-8002"}
    assert normalize({"gcode_state": "FAILED"})["failure"] == "print failed"


def test_an_unknown_gcode_state_is_an_error_not_a_guess() -> None:
    state = normalize({"gcode_state": "CALIBRATING"})
    assert state["state"] == "error"
    assert state["failure"] == "unknown gcode_state 'CALIBRATING'"
    assert normalize({})["state"] == "error"


def test_normalize_reports_progress_temperatures_file_and_time_left_of_a_job() -> None:
    state = normalize(
        {
            "gcode_state": "RUNNING",
            "mc_percent": 37,
            "mc_remaining_time": 12,
            "nozzle_temper": 219.6,
            "nozzle_target_temper": 220,
            "bed_temper": "54.8",
            "bed_target_temper": 55,
            "gcode_file": "benchy.gcode",
        }
    )
    assert state == {
        "state": "printing",
        "failure": None,
        "file": "benchy.gcode",
        "progress": 0.37,
        "nozzle": {"actual": 219.6, "target": 220.0},
        "bed": {"actual": 54.8, "target": 55.0},
        "seconds_left": 720.0,
    }


def test_a_project_print_is_reported_as_the_project_file_not_its_plate() -> None:
    report = {
        "gcode_state": "RUNNING",
        "gcode_file": "/data/Metadata/plate_1.gcode",
        "subtask_name": "cube",
    }
    assert normalize(report)["file"] == "cube.3mf"
    # Without a task name the plate path is all the printer said.
    plate_only = {"gcode_state": "RUNNING", "gcode_file": "/data/Metadata/plate_1.gcode"}
    assert normalize(plate_only)["file"] == "/data/Metadata/plate_1.gcode"


def test_normalize_leaves_out_what_the_report_does_not_say() -> None:
    state = normalize({"gcode_state": "IDLE", "gcode_file": "", "mc_remaining_time": 5})
    assert state == {"state": "idle", "failure": None, "file": None, "seconds_left": None}


def test_partial_reports_merge_key_by_key_and_nested_objects_merge_too() -> None:
    cached: dict[str, Any] = {}
    merge_report(
        cached,
        {
            "gcode_state": "IDLE",
            "nozzle_temper": 25.0,
            "upload": {"status": "idle", "progress": 0},
            "hms": [{"attr": 1}],
        },
    )
    merge_report(cached, {"nozzle_temper": 180.0, "upload": {"progress": 40}, "hms": []})
    assert cached == {
        "gcode_state": "IDLE",
        "nozzle_temper": 180.0,
        "upload": {"status": "idle", "progress": 40},
        "hms": [],
    }


def test_print_control_intents_become_print_commands() -> None:
    for intent, command in (
        ("print_pause", "pause"),
        ("print_resume", "resume"),
        ("print_cancel", "stop"),
    ):
        request = request_for(intent, {}, "/sdcard")
        assert request.payload("9") == {
            "print": {"sequence_id": "9", "command": command, "param": ""}
        }


def test_heat_and_cooldown_become_gcode_lines() -> None:
    heat = request_for("printer_heat", {"nozzle": 215.4, "bed": 60}, "/sdcard")
    assert heat.payload("1")["print"] == {
        "sequence_id": "1",
        "command": "gcode_line",
        "param": "M104 S215\nM140 S60\n",
    }
    cool = request_for("printer_cooldown", {}, "/sdcard")
    assert cool.fields["param"] == "M104 S0\nM140 S0\n"


def test_status_asks_for_a_full_push() -> None:
    request = request_for("printer_status", {}, "/sdcard")
    assert request.payload("3") == {
        "pushing": {"sequence_id": "3", "command": "pushall", "version": 1, "push_target": 1}
    }


def test_print_start_uses_project_file_for_3mf_and_gcode_file_for_gcode() -> None:
    project = request_for("print_start", {"file": "cube.3mf"}, "/sdcard")
    assert project.command == "project_file"
    assert project.fields["param"] == "Metadata/plate_1.gcode"
    assert project.fields["url"] == "ftp:///cube.3mf"
    assert project.fields["subtask_name"] == "cube"
    gcode = request_for("print_start", {"file": "benchy.gcode"}, "/sdcard")
    assert (gcode.command, gcode.fields["param"]) == ("gcode_file", "/sdcard/benchy.gcode")


@pytest.mark.parametrize(
    "name", ["/usb/benchy.gcode", "parts/cube.3mf", "../x.3mf", "a\nM104 S300.gcode", "a%2Fb"]
)
def test_print_start_of_anything_but_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(DeviceRefused, match=r"^p1s: print file name refused"):
        request_for("print_start", {"file": name}, "/sdcard", "p1s")


def test_intents_outside_a_printers_vocabulary_are_refused() -> None:
    with pytest.raises(DeviceRefused, match="cannot door_unlock"):
        request_for("door_unlock", {}, "/sdcard")
    with pytest.raises(DeviceRefused, match="nozzle or bed"):
        request_for("printer_heat", {}, "/sdcard")


def _device(**connection: Any) -> DeviceTarget:
    return DeviceTarget(
        id=uuid4(),
        external_id="p1s",
        kind=DeviceKind.PRINTER,
        integration="bambu",
        connection=connection,
    )


def test_connection_defaults_to_port_8883_and_verified_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KL_UNIT_BAMBU_CODE", "87654321")
    conn = BambuConnection.from_device(
        _device(host="10.0.0.7", serial="01P00A1", access_code="${KL_UNIT_BAMBU_CODE}")
    )
    assert (conn.host, conn.port, conn.serial) == ("10.0.0.7", 8883, "01P00A1")
    assert conn.access_code == "87654321"
    assert (conn.ca_file, conn.insecure_tls) == (None, False)
    assert "87654321" not in repr(conn)
    assert conn.request_topic == "device/01P00A1/request"
    assert conn.report_topic == "device/01P00A1/report"


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"serial": "S", "access_code": "c"}, "connection.host is not set"),
        ({"host": "h", "access_code": "c"}, "connection.serial is not set"),
        ({"host": "h", "serial": "S"}, "connection.access_code is not set"),
        ({"host": "h", "serial": "S/#", "access_code": "c"}, "serial must not contain"),
        ({"host": "h", "serial": "S", "access_code": "c", "port": "x"}, "port must be a number"),
        ({"host": "h", "serial": "S", "access_code": "c", "port": 0}, "port must be 1-65535"),
        (
            {"host": "h", "serial": "S", "access_code": "c", "insecure_tls": "yes"},
            "insecure_tls must be true or false",
        ),
    ],
)
def test_a_malformed_connection_is_device_unavailable_naming_the_key(
    connection: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeviceUnavailable, match=message):
        BambuConnection.from_device(_device(**connection))


@pytest.mark.parametrize(
    "name", ["", "  ", "a\r\nDELE x.3mf", "nul\0.gcode", "../etc/x.gcode", "cache/cube.3mf"]
)
def test_upload_names_that_could_break_the_ftp_command_or_leave_the_card_root_are_invalid(
    name: str, tmp_path: Path
) -> None:
    # Refused before the file is opened or the printer is reached (192.0.2.1 is TEST-NET).
    upload = bambu_ftps.upload(
        host="192.0.2.1",
        port=990,
        serial="S",
        access_code="c",
        context=ssl.create_default_context(),
        filename=name,
        path=tmp_path / "missing.3mf",
        socket_timeout=0.1,
    )
    with pytest.raises(ValidationFailed, match="filename"):
        asyncio.run(upload)
