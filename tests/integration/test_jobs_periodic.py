"""The periodic housekeeping tasks: what the job app schedules and when, and what each
task does to a real database, run by a real procrastinate worker with its settings."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import event, func, select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AuditEntry,
    ConversationSession,
    Device,
    DeviceCommand,
    FabricationJob,
    TelemetryEvent,
    Zone,
)
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.config import (
    DeviceSettings,
    FabricationSettings,
    JobSettings,
    SessionSettings,
    Settings,
    TelemetrySettings,
)
from kittylab.devices import commands, maintenance
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import (
    CommandStatus,
    DeviceKind,
    FabricationStatus,
    HazardLevel,
    OnlineState,
)
from kittylab.domain.errors import ValidationFailed
from kittylab.fabrication import uploads
from kittylab.people import identity
from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import JobContext, check_heartbeat_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _settings(tmp_path: Path, **sections: Any) -> Settings:
    return Settings(
        data_dir=tmp_path, jobs=JobSettings(poll_interval_seconds=0.2), _env_file=None, **sections
    )


def _context(database: Database, settings: Settings) -> JobContext:
    return JobContext(database=database, sender=AppriseSender(settings.notify), settings=settings)


def _run_task(database_url: str, context: JobContext, task: str) -> None:
    """Defer one run of a periodic task now, then work the queue until it is empty."""

    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            await app.configure_task(task).defer_async(timestamp=int(NOW.timestamp()))
            await run_worker(app, context, concurrency=1, wait=False)

    asyncio.run(main())


# --- the schedule ------------------------------------------------------------------------


def test_job_app_schedules_every_periodic_task_with_its_cron_and_a_queueing_lock() -> None:
    app = build_job_app("postgresql://kittylab@127.0.0.1:1/unused")  # never connects

    schedule = {
        periodic.task.name: periodic.cron
        for periodic in app.periodic_registry.periodic_tasks.values()
    }
    locks = {
        periodic.task.name: periodic.task.queueing_lock
        for periodic in app.periodic_registry.periodic_tasks.values()
    }

    assert schedule == {
        "kittylab:sweep_notifications": "* * * * *",
        "kittylab:cleanup_sessions": "*/5 * * * *",
        "kittylab:recover_stalled_jobs": "* * * * *",
        "kittylab:mark_devices_offline": "* * * * *",
        "kittylab:purge_telemetry": "0 * * * *",
        "kittylab:purge_conversation_messages": "0 * * * *",
        "kittylab:reconcile_commands": "* * * * *",
        "kittylab:advance_print_queues": "* * * * *",
        "kittylab:expire_safety_events": "* * * * *",
        "kittylab:resume_cad_jobs": "* * * * *",
        "kittylab:remove_unused_uploads": "0 * * * *",
    }
    assert locks == {name: name for name in schedule}


def test_a_stalled_worker_timeout_within_two_heartbeats_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_heartbeat_settings(
            JobSettings(heartbeat_interval_seconds=10, stalled_worker_timeout_seconds=20)
        )
    assert caught.value.field == "jobs.stalled_worker_timeout_seconds"
    check_heartbeat_settings(JobSettings())


def test_job_context_refuses_heartbeat_settings_a_worker_cannot_run_with(
    database: Database, tmp_path: Path
) -> None:
    jobs = JobSettings(heartbeat_interval_seconds=10, stalled_worker_timeout_seconds=15)
    with pytest.raises(ValidationFailed):
        _context(database, Settings(data_dir=tmp_path, jobs=jobs, _env_file=None))


# --- session cleanup ---------------------------------------------------------------------


def test_session_cleanup_task_uses_the_configured_inactivity_ttl(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    now = utcnow()
    with database.unit_of_work() as session:
        session.add_all(
            [
                ConversationSession(
                    context_key="idle-2h", last_message_at=now - timedelta(hours=2)
                ),
                ConversationSession(
                    context_key="idle-30m", last_message_at=now - timedelta(minutes=30)
                ),
            ]
        )
    settings = _settings(tmp_path, sessions=SessionSettings(inactivity_ttl_seconds=3600))

    _run_task(database_url, _context(database, settings), "kittylab:cleanup_sessions")

    # With the default TTL (a day) both would stay.
    with database.unit_of_work() as session:
        assert session.scalars(select(ConversationSession.context_key)).all() == ["idle-30m"]


# --- devices that stop reporting go offline ---------------------------------------------


@pytest.fixture
def zone_id(database: Database) -> UUID:
    with database.unit_of_work() as session:
        zone = Zone(name="print-farm", hazard_level=HazardLevel.LOW)
        session.add(zone)
        session.flush()
        return zone.id


def _device(
    database: Database,
    zone_id: UUID,
    external_id: str,
    state: OnlineState,
    last_seen: datetime | None,
    *,
    retired: bool = False,
) -> None:
    with database.unit_of_work() as session:
        session.add(
            Device(
                external_id=external_id,
                integration="simulated",
                display_name=external_id,
                kind=DeviceKind.SENSOR,
                zone_id=zone_id,
                online_state=state,
                last_seen=last_seen,
                retired_at=last_seen if retired else None,
            )
        )


def _states(database: Database) -> dict[str, OnlineState]:
    with database.unit_of_work() as session:
        rows = session.execute(select(Device.external_id, Device.online_state)).all()
    return {external_id: state for external_id, state in rows}


def test_online_devices_silent_past_the_window_go_offline(
    database: Database, zone_id: UUID
) -> None:
    window = timedelta(seconds=120)
    _device(database, zone_id, "silent", OnlineState.ONLINE, NOW - timedelta(seconds=121))
    _device(database, zone_id, "at-the-edge", OnlineState.ONLINE, NOW - window)
    _device(database, zone_id, "reporting", OnlineState.ONLINE, NOW - timedelta(seconds=10))
    _device(database, zone_id, "faulty", OnlineState.FAULT, NOW - timedelta(hours=1))
    _device(database, zone_id, "never-seen", OnlineState.ONLINE, None)
    _device(
        database, zone_id, "retired", OnlineState.ONLINE, NOW - timedelta(hours=1), retired=True
    )

    with database.unit_of_work() as session:
        changed = maintenance.mark_silent_devices_offline(session, NOW, window)

    assert changed == 2
    assert _states(database) == {
        "silent": OnlineState.OFFLINE,
        "at-the-edge": OnlineState.ONLINE,
        "reporting": OnlineState.ONLINE,
        "faulty": OnlineState.FAULT,
        "never-seen": OnlineState.ONLINE,
        "retired": OnlineState.OFFLINE,
    }


def test_offline_task_uses_the_configured_window(
    database: Database, database_url: str, zone_id: UUID, tmp_path: Path
) -> None:
    now = utcnow()
    _device(database, zone_id, "silent-15m", OnlineState.ONLINE, now - timedelta(minutes=15))
    _device(database, zone_id, "silent-5m", OnlineState.ONLINE, now - timedelta(minutes=5))
    settings = _settings(tmp_path, devices=DeviceSettings(offline_after_seconds=600))

    _run_task(database_url, _context(database, settings), "kittylab:mark_devices_offline")

    # With the default window (2 minutes) both would go offline.
    assert _states(database) == {
        "silent-15m": OnlineState.OFFLINE,
        "silent-5m": OnlineState.ONLINE,
    }


# --- telemetry retention -----------------------------------------------------------------


def _telemetry(database: Database, device_id: UUID, recorded: list[datetime]) -> None:
    with database.unit_of_work() as session:
        session.add_all(
            TelemetryEvent(device_id=device_id, topic="state", payload={"n": i}, recorded_at=at)
            for i, at in enumerate(recorded)
        )


def _telemetry_times(database: Database) -> list[datetime]:
    with database.unit_of_work() as session:
        return list(
            session.scalars(select(TelemetryEvent.recorded_at).order_by(TelemetryEvent.recorded_at))
        )


@pytest.fixture
def device_id(database: Database, zone_id: UUID) -> UUID:
    _device(database, zone_id, "climate", OnlineState.ONLINE, NOW)
    with database.unit_of_work() as session:
        return session.scalars(select(Device.id)).one()


@pytest.fixture
def delete_statements(database: Database) -> Iterator[list[str]]:
    """Every DELETE on telemetry_events the database's engine runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM TELEMETRY_EVENTS"):
            seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    yield seen
    event.remove(database.engine, "before_cursor_execute", record)


def test_telemetry_past_retention_is_deleted_in_bounded_batches(
    database: Database, device_id: UUID, delete_statements: list[str]
) -> None:
    retention = timedelta(days=30)
    old = [NOW - retention - timedelta(minutes=m + 1) for m in range(25)]
    kept = [NOW - retention, NOW - timedelta(days=1), NOW]
    _telemetry(database, device_id, old + kept)

    deleted = maintenance.purge_old_telemetry(database, NOW, retention, batch_size=10)

    assert deleted == 25
    assert _telemetry_times(database) == kept
    assert len(delete_statements) == 3  # 10 + 10 + 5, each in its own transaction


def test_purging_with_nothing_old_deletes_nothing(database: Database, device_id: UUID) -> None:
    _telemetry(database, device_id, [NOW])
    assert maintenance.purge_old_telemetry(database, NOW, timedelta(days=1), batch_size=10) == 0
    assert _telemetry_times(database) == [NOW]


def test_telemetry_purge_task_uses_the_configured_retention(
    database: Database, database_url: str, device_id: UUID, tmp_path: Path
) -> None:
    now = utcnow()
    _telemetry(database, device_id, [now - timedelta(days=8), now - timedelta(days=6)])
    settings = _settings(
        tmp_path, telemetry=TelemetrySettings(retention_days=7, purge_batch_size=1)
    )

    _run_task(database_url, _context(database, settings), "kittylab:purge_telemetry")

    with database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(TelemetryEvent)) == 1


# --- device commands whose dispatch job was lost ----------------------------------------


class _LightDriver:
    """A light that does what it is told: a fake of the driver port, recording sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.on = False

    async def send(self, device: Any, intent: str, payload: Any) -> None:
        self.sent.append(intent)
        self.on = intent == "light_on"

    async def state(self, device: Any) -> dict[str, Any]:
        return {"on": self.on}

    async def close(self) -> None:
        return None


def test_reconcile_sends_lost_commands_expires_stale_ones_and_leaves_fresh_ones(
    database: Database, database_url: str, zone_id: UUID, tmp_path: Path
) -> None:
    now = utcnow()
    with database.unit_of_work() as session:
        user = identity.create_user(
            session, username="olivia", display_name="O", roles=["operator"]
        )
        light = Device(
            external_id="lamp",
            integration="simulated",
            display_name="Lamp",
            kind=DeviceKind.LIGHT,
            zone_id=zone_id,
            capabilities={"light_off": {"type": "object"}},
        )
        session.add(light)
        session.flush()
        ids = {
            label: commands.create_command(
                session,
                device=light,
                intent="light_off",
                payload={},
                requested_by=user.id,
                now=now - age,
            ).id
            for label, age in [
                ("lost", timedelta(seconds=45)),
                ("stale", timedelta(minutes=5)),
                ("fresh", timedelta(seconds=5)),
            ]
        }
    driver = _LightDriver()
    settings = _settings(tmp_path)
    context = JobContext(
        database=database,
        sender=AppriseSender(settings.notify),
        settings=settings,
        drivers={"simulated": driver},
    )

    _run_task(database_url, context, "kittylab:reconcile_commands")

    with database.unit_of_work() as session:
        status = {
            label: session.get(DeviceCommand, command_id) for label, command_id in ids.items()
        }
        assert {k: v.status for k, v in status.items() if v} == {
            "lost": CommandStatus.ACKED,
            "stale": CommandStatus.FAILED,
            "fresh": CommandStatus.PENDING,
        }
        stale = status["stale"]
        assert stale is not None and "nothing was sent" in (stale.failure_reason or "")
    assert driver.sent == ["light_off"]  # not a safe intent: the stale one expired


# --- uploads no print job uses are removed after their retention --------------------------


@dataclass(frozen=True)
class UploadLab:
    store: FolderArtifactStore
    printer_id: UUID
    owner_id: UUID


@pytest.fixture
def upload_lab(database: Database, zone_id: UUID, tmp_path: Path) -> UploadLab:
    with database.unit_of_work() as session:
        owner = identity.create_user(
            session, username="erin", display_name="Erin", roles=["engineer"]
        )
        printer = Device(
            external_id="mk4",
            integration="simulated",
            display_name="MK4",
            kind=DeviceKind.PRINTER,
            zone_id=zone_id,
            online_state=OnlineState.ONLINE,
        )
        session.add(printer)
        session.flush()
        return UploadLab(FolderArtifactStore(tmp_path / "artifacts"), printer.id, owner.id)


def _stored(lab: UploadLab, key: str, age: timedelta) -> str:
    """An artifact under ``key`` last stored ``age`` ago."""
    lab.store.put_bytes(key, b"G28\n", content_type="text/x-gcode")
    when = (utcnow() - age).timestamp()
    os.utime(lab.store.root / key, (when, when))
    return key


def _job(
    database: Database,
    lab: UploadLab,
    *,
    gcode_path: str,
    details: dict[str, Any],
    status: FabricationStatus = FabricationStatus.PREPARING,
) -> None:
    with database.unit_of_work() as session:
        session.add(
            FabricationJob(
                device_id=lab.printer_id,
                gcode_path=gcode_path,
                details=details,
                status=status,
                requested_by=lab.owner_id,
            )
        )


def _keys(store: FolderArtifactStore) -> set[str]:
    return {info.key for info in store.list_artifacts("")}


def test_unused_uploads_past_the_retention_are_removed_and_audited_used_and_young_ones_kept(
    database: Database, database_url: str, upload_lab: UploadLab, tmp_path: Path
) -> None:
    lab, old, young = upload_lab, timedelta(days=11), timedelta(days=9)
    mine = f"uploads/{lab.owner_id}"
    unused = _stored(lab, f"{mine}/20250101-aaaaaaaaaaaa/unused.stl", old)
    legacy = _stored(lab, "uploads/20240101-bbbbbbbbbbbb/legacy.gcode", old)
    sliced = _stored(lab, f"{mine}/20250101-cccccccccccc/sliced.stl", old)
    printed = _stored(lab, f"{mine}/20250101-dddddddddddd/printed.gcode", old)
    as_gcode = _stored(lab, f"{mine}/20250101-eeeeeeeeeeee/as-is.gcode", old)
    fresh = _stored(lab, f"{mine}/20250101-ffffffffffff/fresh.stl", young)
    other = _stored(lab, "gcode/old-job.gcode", old)  # not an upload: not retention's
    _job(
        database,
        lab,
        gcode_path="fabrication/20250101-000000000000/sliced.gcode",
        details={"source_key": sliced, "stage": "queued"},
        status=FabricationStatus.COMPLETED,
    )
    _job(
        database,
        lab,
        gcode_path=printed,
        details={"source_key": printed},
        status=FabricationStatus.ABORTED,
    )
    _job(database, lab, gcode_path=as_gcode, details={}, status=FabricationStatus.FAILED)
    settings = _settings(tmp_path, fabrication=FabricationSettings(upload_retention_days=10))
    context = JobContext(
        database=database,
        sender=AppriseSender(settings.notify),
        settings=settings,
        artifacts=lab.store,
    )

    _run_task(database_url, context, "kittylab:remove_unused_uploads")

    # With the default retention (14 days) nothing would have gone.
    assert _keys(lab.store) == {sliced, printed, as_gcode, fresh, other}
    with database.unit_of_work() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "upload.removed")
        ).all()
        removed = {entry.details["key"]: entry for entry in entries}
        assert set(removed) == {unused, legacy}
        assert removed[unused].subject_id == str(lab.owner_id)
        assert removed[unused].actor_id is None
        assert removed[unused].details["size"] == 4
        assert removed[legacy].subject_id is None
    assert not (lab.store.root / "uploads" / "20240101-bbbbbbbbbbbb").exists()


def test_an_upload_a_new_job_is_taking_is_not_removed_under_it(
    database: Database, upload_lab: UploadLab
) -> None:
    lab = upload_lab
    key = _stored(
        lab, f"uploads/{lab.owner_id}/20250101-aaaaaaaaaaaa/part.gcode", timedelta(days=30)
    )
    removal: list[list[uploads.RemovedUpload]] = []
    with database.unit_of_work() as session:
        uploads.hold_uploads(session)  # what POST /api/fabrication/jobs takes first
        sweep = threading.Thread(
            target=lambda: removal.append(
                uploads.remove_unused(database, lab.store, utcnow(), timedelta(days=14))
            )
        )
        sweep.start()
        time.sleep(0.5)
        assert sweep.is_alive(), "the removal did not wait for the job being created"
        assert lab.store.exists(key)
        session.add(
            FabricationJob(
                device_id=lab.printer_id,
                gcode_path=key,
                details={"source_key": key},
                requested_by=lab.owner_id,
            )
        )
    sweep.join(timeout=10)

    assert removal == [[]]
    assert lab.store.exists(key)
