"""POST /api/device/{deviceId}/command: validation at the edge, roles, refusals, retries."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.devices.requests import request_command
from kittylab.domain.enums import FabricationStatus, OnlineState, Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.fabrication import records as fabrication_records
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.conftest import Person, _person


@pytest.fixture
def devices(
    container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> dict[str, UUID]:
    """The demo lab, with every device online (as after its first report)."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE
        return {d.external_id: d.id for d in s.scalars(select(Device))}


def send(client: TestClient, who: Person, device: UUID, body: object) -> dict[str, object]:
    response = client.post(f"/api/device/{device}/command", json=body, headers=who.headers)
    payload: dict[str, object] = response.json()
    payload["_status"] = response.status_code
    return payload


def test_an_operator_command_is_accepted_and_queued_for_dispatch(
    client: TestClient, operator: Person, devices: dict[str, UUID], database: Database
) -> None:
    answer = send(
        client,
        operator,
        devices["farm-lights"],
        {"intent": "light_set_brightness", "payload": {"brightness": 30}},
    )
    assert answer["_status"] == 202
    assert answer["status"] == "dispatched"
    assert answer["hazardEventId"] is None
    command = client.get(f"/api/commands/{answer['commandId']}", headers=operator.headers).json()
    assert command["status"] == "pending"
    assert command["payload"] == {"brightness": 30}
    with database.engine.connect() as conn:
        jobs = (
            conn.execute(
                text("SELECT args->>'command_id' FROM procrastinate_jobs WHERE task_name = :t"),
                {"t": "kittylab:dispatch_command"},
            )
            .scalars()
            .all()
        )
    assert jobs == [answer["commandId"]]


def test_a_retried_request_returns_the_first_command(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    body = {"intent": "light_on", "correlationId": "tablet-42"}
    first = send(client, operator, devices["bench-lights"], body)
    second = send(client, operator, devices["bench-lights"], body)
    assert first["commandId"] == second["commandId"]
    reused = send(client, operator, devices["bench-lights"], {**body, "intent": "light_off"})
    assert reused["_status"] == 409
    assert reused["field"] == "correlationId"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"intent": "light_set_brightness", "payload": {"brightness": 130}}, "payload.brightness"),
        ({"intent": "light_set_brightness", "payload": {}}, "payload"),
        ({"intent": "print_start", "payload": {"file": "x.gcode"}}, "intent"),
        ({"intent": "Light On"}, "intent"),
        ({"intent": "light_on", "colour": "red"}, "colour"),
    ],
)
def test_bad_commands_are_422_naming_the_field(
    client: TestClient, operator: Person, devices: dict[str, UUID], body: object, field: str
) -> None:
    answer = send(client, operator, devices["farm-lights"], body)
    assert answer["_status"] == 422
    assert answer["field"] == field


def test_unknown_device_is_404(client: TestClient, operator: Person) -> None:
    answer = send(client, operator, UUID(int=7), {"intent": "light_on"})
    assert answer["_status"] == 404


def test_hazardous_intents_wait_for_approval_and_nothing_is_sent(
    client: TestClient, admin: Person, devices: dict[str, UUID]
) -> None:
    answer = send(client, admin, devices["welding-door"], {"intent": "door_unlock"})
    assert answer["_status"] == 202
    assert answer["status"] == "awaiting_confirmation"
    assert answer["hazardEventId"] is not None
    assert "2 signed approvals by admin or safety" in str(answer["missing"])
    [command] = client.get("/api/commands", headers=admin.headers).json()["items"]
    assert command["status"] == "pending"
    assert command["safetyEventId"] == answer["hazardEventId"]


def test_a_held_command_answers_the_pending_hazard_the_query_route_answers(
    client: TestClient, admin: Person, devices: dict[str, UUID]
) -> None:
    answer = send(client, admin, devices["welding-door"], {"intent": "door_unlock"})
    hazard = answer["pendingHazard"]
    assert isinstance(hazard, dict)
    assert hazard["status"] == "awaiting_confirmation"
    assert (hazard["intent"], hazard["device"]) == ("door_unlock", "welding-door")
    assert hazard["commandId"] == answer["commandId"]
    assert hazard["hazardLevel"] == "high"
    # The deprecated fields carry the same values for one release.
    assert answer["hazardEventId"] == hazard["eventId"]
    assert answer["missing"] == hazard["missing"]
    said = client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": "unlock the welding bay door"}},
        headers=admin.headers,
    )
    assert said.status_code == 202, said.text
    assert set(said.json()["pendingHazard"]) == set(hazard)


def test_the_old_hazard_event_id_field_is_deprecated_in_the_openapi_schema(
    client: TestClient,
) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    accepted = schemas["CommandAccepted"]["properties"]
    assert accepted["hazardEventId"]["deprecated"] is True
    assert "pendingHazard" in accepted


def test_a_safe_intent_in_a_high_hazard_zone_goes_through(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    answer = send(client, operator, devices["welding-door"], {"intent": "door_lock"})
    assert answer["_status"] == 202


def test_offline_device_is_409(
    client: TestClient, operator: Person, devices: dict[str, UUID], database: Database
) -> None:
    with database.unit_of_work() as s:
        device = s.get(Device, devices["cnc-lights"])
        assert device is not None
        device.online_state = OnlineState.OFFLINE
    answer = send(client, operator, devices["cnc-lights"], {"intent": "light_on"})
    assert answer["_status"] == 409
    assert "offline" in str(answer["detail"])


def test_engineers_do_not_drive_equipment_directly(
    client: TestClient, database: Database, devices: dict[str, UUID]
) -> None:
    engineer = _person(database, "test-engineer", ["engineer"])
    answer = send(client, engineer, devices["farm-lights"], {"intent": "light_on"})
    assert answer["_status"] == 403


def test_a_signature_is_refused_rather_than_ignored(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    body = {"intent": "light_on", "safetySignature": "c2lnbmVk"}
    answer = send(client, operator, devices["farm-lights"], body)
    assert answer["_status"] == 422
    assert answer["field"] == "safetySignature"


def test_a_device_in_fault_still_takes_commands_that_make_it_safer(
    client: TestClient, operator: Person, devices: dict[str, UUID], database: Database
) -> None:
    with database.unit_of_work() as s:
        device = s.get(Device, devices["welder-power"])
        assert device is not None
        device.online_state = OnlineState.FAULT
    assert (
        send(client, operator, devices["welder-power"], {"intent": "power_off"})["_status"] == 202
    )
    light = devices["welding-lights"]
    with database.unit_of_work() as s:
        row = s.get(Device, light)
        assert row is not None
        row.online_state = OnlineState.FAULT
    refused = send(
        client, operator, light, {"intent": "light_set_brightness", "payload": {"brightness": 5}}
    )
    assert refused["_status"] == 409
    assert "fault" in str(refused["detail"])


def test_print_start_is_refused_while_the_last_print_is_still_on_the_bed(
    client: TestClient,
    operator: Person,
    devices: dict[str, UUID],
    database: Database,
    container: bootstrap.Container,
) -> None:
    with database.unit_of_work() as s:
        printer = s.get(Device, devices["prusa-mk4"])
        assert printer is not None
        job = fabrication_records.create_fabrication_job(
            s,
            device=printer,
            gcode_path="uploads/x/part.gcode",
            requested_by=operator.user_id,
            now=container.clock(),
        )
        for status in (FabricationStatus.PRINTING, FabricationStatus.COMPLETED):
            fabrication_records.advance_fabrication_job(s, job.id, status, now=container.clock())
    body = {"intent": "print_start", "payload": {"file": "next.gcode"}}
    refused = send(client, operator, devices["prusa-mk4"], body)
    assert refused["_status"] == 409
    assert "still on the bed" in str(refused["detail"])
    cleared = client.post(
        f"/api/fabrication/printers/{devices['prusa-mk4']}/bed-clear", headers=operator.headers
    )
    assert cleared.status_code == 200
    assert send(client, operator, devices["prusa-mk4"], body)["_status"] == 202


# A print_start file goes into a printer's URL path (OctoPrint) or a Klipper script line
# (Moonraker): anything but a plain file name is refused at the edge, before a command exists.
HOSTILE_PRINT_FILES = {
    "octoprint-shutdown": "../../system/commands/core/shutdown",
    "klipper-injection": (
        'x\\" FILENAME=benchy.gcode\nM104 S250\nSET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=110'
    ),
    "folder": "jobs/part.gcode",
    "backslash": "..\\..\\part.gcode",
    "quote": 'part.gcode" FILENAME="other.gcode',
    "encoded-slash": "..%2F..%2Fsystem%2Fcommands",
    "encoded-dots": "%2e%2e%5Cpart.gcode",
    "newline": "part.gcode\nM104 S300",
    "trailing-newline": "part.gcode\n",
    "nul": "part\u0000.gcode",
    "escape": "part\u001b.gcode",
    "leading-dash": "-part.gcode",
    "over-long": "p" * 200 + ".gcode",
}


def _commands_and_dispatches(database: Database) -> tuple[int, int]:
    with database.engine.connect() as conn:
        commands = conn.execute(text("SELECT count(*) FROM device_commands")).scalar_one()
        jobs = conn.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": "kittylab:dispatch_command"},
        ).scalar_one()
    return int(commands), int(jobs)


@pytest.mark.parametrize("name", HOSTILE_PRINT_FILES.values(), ids=HOSTILE_PRINT_FILES.keys())
def test_print_start_of_anything_but_a_plain_file_name_is_422_naming_payload_file(
    client: TestClient, admin: Person, devices: dict[str, UUID], database: Database, name: str
) -> None:
    response = client.post(
        f"/api/device/{devices['voron-24']}/command",
        json={"intent": "print_start", "payload": {"file": name}},
        headers=admin.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "payload.file"
    assert _commands_and_dispatches(database) == (0, 0)


def test_a_printer_recorded_with_the_old_print_start_schema_still_refuses_a_path(
    client: TestClient, admin: Person, devices: dict[str, UUID], database: Database
) -> None:
    # Devices applied before the rule keep the schema they were stored with.
    old = {
        "type": "object",
        "properties": {"file": {"type": "string", "minLength": 1, "maxLength": 512}},
        "required": ["file"],
        "additionalProperties": False,
    }
    with database.unit_of_work() as s:
        voron = s.get(Device, devices["voron-24"])
        assert voron is not None
        voron.capabilities = {**voron.capabilities, "print_start": old}
    body = {"intent": "print_start", "payload": {"file": HOSTILE_PRINT_FILES["klipper-injection"]}}
    refused = send(client, admin, devices["voron-24"], body)
    assert (refused["_status"], refused["field"]) == (422, "payload.file")
    assert _commands_and_dispatches(database) == (0, 0)
    accepted = send(
        client,
        admin,
        devices["voron-24"],
        {"intent": "print_start", "payload": {"file": "benchy.gcode"}},
    )
    assert accepted["_status"] == 202


@pytest.mark.parametrize("name", ["benchy.gcode", "Part_2-v3.gcode", "bracket.3mf"])
def test_print_start_of_a_plain_file_name_is_accepted(
    client: TestClient, operator: Person, devices: dict[str, UUID], name: str
) -> None:
    body = {"intent": "print_start", "payload": {"file": name}}
    answer = send(client, operator, devices["voron-24"], body)
    assert answer["_status"] == 202, answer
    # A print is a job (issue 16); no upload of that name: the printer's own file.
    assert (answer["status"], answer["commandId"]) == ("queued", None)
    job = client.get(f"/api/fabrication/jobs/{answer['jobId']}", headers=operator.headers).json()
    assert job["details"]["printer_file"] == name


def test_the_gate_itself_refuses_an_engineer_whatever_route_calls_it(
    container: bootstrap.Container, database: Database, devices: dict[str, UUID]
) -> None:
    # The router's role filter is only a first filter: request_command is the rule, for the
    # conversation, fabrication and monitoring as for this route (issue 13, hole 5).
    engineer = _person(database, "test-engineer", ["engineer"])
    caller = Principal(engineer.user_id, "test-engineer", frozenset({Role.ENGINEER}))
    refused = pytest.raises(PermissionDenied, match="operator, safety or admin")
    with refused, database.unit_of_work() as uow:
        request_command(
            uow,
            jobs=container.jobs,
            device_id=devices["voron-24"],
            intent="printer_heat",
            payload={"nozzle": 250},
            requester=caller,
            now=container.clock(),
        )
    with database.unit_of_work() as uow:
        assert uow.scalar(select(func.count()).select_from(DeviceCommand)) == 0
        # A read goes through, in the engineer's name.
        read = request_command(
            uow,
            jobs=container.jobs,
            device_id=devices["fume-sensor"],
            intent="sensor_read",
            payload={},
            requester=caller,
            now=container.clock(),
        )
        assert read.command.requested_by == engineer.user_id
