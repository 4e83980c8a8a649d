"""The data model's rules enforced on the write path: the record services against the real
database, with the rows they need made directly through the ORM."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select, text

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    Device,
    DeviceCommand,
    FabricationJob,
    RoutingDecision,
    User,
    Zone,
)
from kittylab.cad import records as cad_records
from kittylab.conversation import routing_log
from kittylab.devices import commands
from kittylab.domain.devices import INTENT_CATALOGUE
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADPolicyMode,
    CADProvider,
    CommandStatus,
    DeviceKind,
    FabricationStatus,
    HazardLevel,
    MonitorEventType,
    Role,
    Tier,
)
from kittylab.domain.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from kittylab.fabrication import records as fabrication_records

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

METADATA: dict[str, Any] = {
    "bounding_box": {"x": 40, "y": 20, "z": 10},
    "material_hints": ["PETG"],
    "generation_params": {"seed": 7},
}


@dataclass(frozen=True)
class Lab:
    user: UUID
    light: UUID
    printer: UUID


@pytest.fixture
def lab(database: Database) -> Lab:
    with database.unit_of_work() as s:
        user = User(username="olivia", display_name="Olivia", roles=[Role.OPERATOR])
        zone = Zone(name="print-farm", hazard_level=HazardLevel.LOW)
        s.add_all([user, zone])
        s.flush()
        light = Device(
            external_id="farm-lights",
            integration="simulated",
            display_name="Farm lights",
            kind=DeviceKind.LIGHT,
            zone_id=zone.id,
            capabilities={
                i: INTENT_CATALOGUE[i] for i in ("light_on", "light_off", "light_set_brightness")
            },
        )
        printer = Device(
            external_id="prusa-mk4",
            integration="simulated",
            display_name="Prusa MK4",
            kind=DeviceKind.PRINTER,
            zone_id=zone.id,
            capabilities={"print_start": INTENT_CATALOGUE["print_start"]},
        )
        s.add_all([light, printer])
        s.flush()
        return Lab(user=user.id, light=light.id, printer=printer.id)


# --- routing decisions -------------------------------------------------------------------


def _decide(database: Database, **overrides: Any) -> RoutingDecision:
    values: dict[str, Any] = {
        "conversation_id": None,
        "request_id": uuid4(),
        "input_text": "Turn on the farm lights",
        "selected_tier": Tier.LOCAL,
        "confidence": 0.92,
        "confidence_factors": {"grammar": 1.0, "model": 0.84},
        "cost_estimate": Decimal("0.0004"),
        "latency_ms": 38,
        "escalation_reason": None,
        "performed_by": None,
    }
    values.update(overrides)
    with database.unit_of_work() as s:
        return routing_log.record_routing_decision(s, **values)


def test_routing_decision_with_confidence_above_one_is_refused(database: Database) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _decide(database, confidence=1.2)
    assert caught.value.field == "confidence"
    with database.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(RoutingDecision)) == 0


def test_routing_decision_without_a_cost_stores_zero(database: Database) -> None:
    decision = _decide(database, cost_estimate=None)
    with database.unit_of_work() as s:
        stored = s.scalar(
            select(RoutingDecision.cost_estimate).where(RoutingDecision.id == decision.id)
        )
    assert stored == Decimal(0)


def test_routing_decision_stores_a_hash_of_the_normalized_input_never_the_text(
    database: Database, lab: Lab
) -> None:
    secret_text = "Turn ON the   Farm Lights"
    decision = _decide(database, input_text=secret_text, performed_by=lab.user)
    expected = hashlib.sha256(b"turn on the farm lights").hexdigest()
    assert decision.input_hash == expected
    assert routing_log.input_hash("turn on the farm lights") == expected
    with database.unit_of_work() as s:
        row = s.scalar(
            text("SELECT row_to_json(r)::text FROM routing_decisions r WHERE id = :id"),
            {"id": decision.id},
        )
    assert row is not None
    assert "farm lights" not in row.lower()


def test_second_decision_for_one_request_is_a_conflict(database: Database) -> None:
    request_id = uuid4()
    _decide(database, request_id=request_id)
    with pytest.raises(Conflict) as caught:
        _decide(database, request_id=request_id, selected_tier=Tier.FRONTIER)
    assert caught.value.field == "requestId"


# --- device commands ---------------------------------------------------------------------


def _command(
    database: Database, lab: Lab, *, device: UUID | None = None, **overrides: Any
) -> DeviceCommand:
    values: dict[str, Any] = {
        "intent": "light_set_brightness",
        "payload": {"brightness": 60},
        "requested_by": lab.user,
        "now": T0,
    }
    values.update(overrides)
    with database.unit_of_work() as s:
        target = s.get(Device, device or lab.light)
        assert target is not None
        return commands.create_command(s, device=target, **values)


def _advance(database: Database, command_id: UUID, target: CommandStatus, at: datetime) -> None:
    with database.unit_of_work() as s:
        commands.advance_command(s, command_id, target, now=at)


def test_command_payload_outside_the_intent_schema_names_the_field(
    database: Database, lab: Lab
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _command(database, lab, payload={"brightness": 150})
    assert caught.value.field == "payload.brightness"


def test_command_intent_outside_the_device_capabilities_is_refused(
    database: Database, lab: Lab
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _command(database, lab, intent="door_unlock", payload={})
    assert caught.value.field == "intent"
    assert "light_on" in caught.value.message


def test_retired_device_refuses_commands(database: Database, lab: Lab) -> None:
    with database.unit_of_work() as s:
        device = s.get(Device, lab.light)
        assert device is not None
        device.retired_at = T0
    with pytest.raises(Conflict):
        _command(database, lab, intent="light_on", payload={})


def test_retry_with_the_same_correlation_id_returns_the_first_command(
    database: Database, lab: Lab
) -> None:
    first = _command(database, lab, correlation_id="req-1")
    again = _command(database, lab, correlation_id="req-1", now=T0 + timedelta(seconds=5))
    assert again.id == first.id
    with database.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(DeviceCommand)) == 1


def test_reusing_a_correlation_id_for_another_payload_is_a_conflict(
    database: Database, lab: Lab
) -> None:
    _command(database, lab, correlation_id="req-1")
    with pytest.raises(Conflict) as caught:
        _command(database, lab, correlation_id="req-1", payload={"brightness": 10})
    assert caught.value.field == "correlationId"
    assert "correlationId" in str(caught.value)


def test_concurrent_retries_with_one_correlation_id_make_one_command(
    database: Database, lab: Lab
) -> None:
    results: list[UUID | BaseException] = []

    def retry() -> None:
        try:
            results.append(
                _command(database, lab, intent="light_on", payload={}, correlation_id="race").id
            )
        except BaseException as exc:  # reported through the assertion below
            results.append(exc)

    with database.unit_of_work() as first_uow:
        device = first_uow.get(Device, lab.light)
        assert device is not None
        first = commands.create_command(
            first_uow,
            device=device,
            intent="light_on",
            payload={},
            requested_by=lab.user,
            correlation_id="race",
            now=T0,
        )
        # The second request blocks on the unique index until the first commits, then
        # must answer with the first one's command instead of failing.
        racer = threading.Thread(target=retry)
        racer.start()
        racer.join(timeout=0.5)
    racer.join(timeout=10)
    assert results == [first.id]


def test_pending_command_cannot_be_acked_without_being_sent(database: Database, lab: Lab) -> None:
    command = _command(database, lab)
    with pytest.raises(InvalidTransition) as caught:
        _advance(database, command.id, CommandStatus.ACKED, T0)
    assert "pending" in str(caught.value)
    assert "acked" in str(caught.value)


def test_acked_command_records_ack_time_and_every_status(database: Database, lab: Lab) -> None:
    command = _command(database, lab)
    _advance(database, command.id, CommandStatus.SENT, T0 + timedelta(seconds=1))
    _advance(database, command.id, CommandStatus.ACKED, T0 + timedelta(seconds=2))
    with database.unit_of_work() as s:
        stored = s.get(DeviceCommand, command.id)
        assert stored is not None
        assert stored.status is CommandStatus.ACKED
        assert stored.ack_at == T0 + timedelta(seconds=2)
        assert [h["status"] for h in stored.status_history] == ["pending", "sent", "acked"]
        assert len(stored.status_history) == 3


def test_failed_command_keeps_a_sanitized_reason(database: Database, lab: Lab) -> None:
    command = _command(database, lab)
    with database.unit_of_work() as s:
        commands.advance_command(
            s,
            command.id,
            CommandStatus.FAILED,
            now=T0,
            reason="device said:\nBearer abc.def-ghi",
        )
    with database.unit_of_work() as s:
        stored = s.get(DeviceCommand, command.id)
        assert stored is not None
        assert stored.failure_reason == "device said: [redacted]"
        assert stored.status_history[-1]["reason"] == "device said: [redacted]"


def test_advancing_an_unknown_command_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        _advance(database, uuid4(), CommandStatus.SENT, T0)


# --- CAD jobs and artifacts ------------------------------------------------------------


def _cad_job(database: Database, lab: Lab, prompt: str = "a 40 mm cable clip") -> UUID:
    with database.unit_of_work() as s:
        job = cad_records.create_cad_job(
            s,
            prompt=prompt,
            policy_mode=CADPolicyMode.OFFLINE,
            requested_by=lab.user,
            now=T0,
        )
        return job.id


def _artifact(database: Database, job_id: UUID, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "cad_job_id": job_id,
        "provider": CADProvider.CADQUERY,
        "artifact_key": "cad/clip/model.step",
        "artifact_type": ArtifactType.STEP,
        "metadata": METADATA,
        "quality_score": 0.8,
    }
    values.update(overrides)
    with database.unit_of_work() as s:
        cad_records.add_cad_artifact(s, **values)


def test_cad_job_cannot_complete_without_running(database: Database, lab: Lab) -> None:
    job_id = _cad_job(database, lab)
    with pytest.raises(InvalidTransition) as caught, database.unit_of_work() as s:
        cad_records.advance_cad_job(s, job_id, CADJobStatus.COMPLETED, now=T0)
    assert "queued" in str(caught.value)
    assert "completed" in str(caught.value)


def test_cad_job_completion_is_stamped(database: Database, lab: Lab) -> None:
    job_id = _cad_job(database, lab)
    with database.unit_of_work() as s:
        running = cad_records.advance_cad_job(s, job_id, CADJobStatus.RUNNING, now=T0)
        assert running.completed_at is None
    done_at = T0 + timedelta(minutes=2)
    with database.unit_of_work() as s:
        done = cad_records.advance_cad_job(s, job_id, CADJobStatus.COMPLETED, now=done_at)
        assert done.completed_at == done_at


def test_cad_prompt_reaches_the_log_only_sanitized(
    database: Database, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    token = "kl_" + "x" * 40
    with caplog.at_level(logging.INFO, logger="kittylab.cad.records"):
        _cad_job(database, lab, prompt=f"bracket\nuse {token}")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "bracket use [redacted]" in logged
    assert token not in logged


def test_artifact_without_a_bounding_box_is_refused(database: Database, lab: Lab) -> None:
    job_id = _cad_job(database, lab)
    metadata = {k: v for k, v in METADATA.items() if k != "bounding_box"}
    with pytest.raises(ValidationFailed) as caught:
        _artifact(database, job_id, metadata=metadata)
    assert caught.value.field == "metadata.bounding_box"


def test_artifact_quality_outside_zero_to_one_is_refused(database: Database, lab: Lab) -> None:
    job_id = _cad_job(database, lab)
    with pytest.raises(ValidationFailed) as caught:
        _artifact(database, job_id, quality_score=1.5)
    assert caught.value.field == "quality_score"


def test_duplicate_artifact_key_is_a_conflict(database: Database, lab: Lab) -> None:
    job_id = _cad_job(database, lab)
    _artifact(database, job_id)
    with pytest.raises(Conflict) as caught:
        _artifact(database, job_id, artifact_type=ArtifactType.STL)
    assert caught.value.field == "artifactKey"


# --- fabrication jobs and monitoring -----------------------------------------------------


def _print_job(database: Database, lab: Lab) -> UUID:
    with database.unit_of_work() as s:
        printer = s.get(Device, lab.printer)
        assert printer is not None
        job = fabrication_records.create_fabrication_job(
            s, device=printer, gcode_path="gcode/clip.gcode", requested_by=lab.user, now=T0
        )
        return job.id


def _move(database: Database, job_id: UUID, target: FabricationStatus, at: datetime) -> None:
    with database.unit_of_work() as s:
        fabrication_records.advance_fabrication_job(s, job_id, target, now=at)


def test_print_job_through_a_pause_keeps_its_first_start_and_stamps_completion(
    database: Database, lab: Lab
) -> None:
    job_id = _print_job(database, lab)
    steps = [
        FabricationStatus.PRINTING,
        FabricationStatus.PAUSED,
        FabricationStatus.PRINTING,
        FabricationStatus.COMPLETED,
    ]
    for minute, target in enumerate(steps, start=1):
        _move(database, job_id, target, T0 + timedelta(minutes=minute))
    with database.unit_of_work() as s:
        stored = s.get(FabricationJob, job_id)
        assert stored is not None
        assert stored.status is FabricationStatus.COMPLETED
        assert stored.started_at == T0 + timedelta(minutes=1)
        assert stored.completed_at == T0 + timedelta(minutes=4)


def test_completed_print_job_cannot_print_again(database: Database, lab: Lab) -> None:
    job_id = _print_job(database, lab)
    _move(database, job_id, FabricationStatus.PRINTING, T0)
    _move(database, job_id, FabricationStatus.COMPLETED, T0)
    with pytest.raises(InvalidTransition) as caught:
        _move(database, job_id, FabricationStatus.PRINTING, T0)
    assert "completed" in str(caught.value)
    assert "printing" in str(caught.value)


def test_print_job_needs_a_printer(database: Database, lab: Lab) -> None:
    with database.unit_of_work() as s:
        light = s.get(Device, lab.light)
        assert light is not None
        with pytest.raises(ValidationFailed) as caught:
            fabrication_records.create_fabrication_job(
                s, device=light, gcode_path="gcode/x.gcode", requested_by=lab.user, now=T0
            )
    assert caught.value.field == "device_id"


def test_failure_monitor_event_without_a_snapshot_is_refused(database: Database, lab: Lab) -> None:
    job_id = _print_job(database, lab)
    with pytest.raises(ValidationFailed) as caught, database.unit_of_work() as s:
        fabrication_records.record_monitor_event(
            s,
            fabrication_job_id=job_id,
            event_type=MonitorEventType.SPAGHETTI_DETECTED,
            confidence=0.9,
            snapshot_key="  ",
            details=None,
            now=T0,
        )
    assert caught.value.field == "snapshot_key"


def test_benign_monitor_event_is_recorded_without_a_snapshot(database: Database, lab: Lab) -> None:
    job_id = _print_job(database, lab)
    with database.unit_of_work() as s:
        event = fabrication_records.record_monitor_event(
            s,
            fabrication_job_id=job_id,
            event_type=MonitorEventType.FIRST_LAYER_OK,
            confidence=0.75,
            snapshot_key=None,
            details={"layer": 1},
            now=T0,
        )
    assert event.snapshot_key is None
    assert event.occurred_at == T0
