"""The print watcher on the simulated lab: telemetry rules and camera detection raise
monitor events with evidence, and failures pause (and for a runaway, cool) the printer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand, PrintMonitorEvent
from kittylab.config import MonitoringSettings
from kittylab.domain.enums import FabricationStatus, MonitorEventType
from tests.integration.live_bus import embedded_broker, free_port, lab_fleet, live_lab, running_bus
from tests.integration.print_lab import PNG, PrintLab, SteppedClock
from tests.peers.camera_peer import CameraPeer
from tests.peers.obico_peer import ObicoPeer


def test_a_heater_that_stops_heating_is_a_runaway_that_pauses_and_cools_the_printer(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("tower.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            created = await lab.start(wired, printer, key)
            assert lab.job(created["id"]).status is FabricationStatus.PRINTING

            clock = SteppedClock(lab.container.clock())
            watcher = bootstrap.print_watcher(replace(wired, clock=clock))
            assert watcher is not None
            simulator = fleet.devices[printer]
            simulator.tick(120)  # up to temperature and printing
            assert simulator.snapshot()["state"] == "printing"
            simulator.break_heater("nozzle")  # type: ignore[attr-defined]
            raised = []
            for _ in range(4):  # the hotend cools under its 215 °C target
                simulator.tick(25)
                await asyncio.to_thread(fleet.report)
                await asyncio.sleep(0.05)  # the new state reaches the driver over MQTT
                raised += await watcher.round()
                clock.now += timedelta(seconds=25)
            assert [(v.condition.value, v.severity.value, v.subject) for v in raised] == [
                ("thermal_runaway", "failure", "nozzle")
            ]
            await lab.work_queue(wired)  # the pause and the cooldown
            snapshot = fleet.devices[printer].snapshot()
            assert snapshot["state"] == "paused"
            assert snapshot["nozzle"]["target"] == 0
            await bootstrap.print_tracker(wired).round()
            assert lab.job(created["id"]).status is FabricationStatus.PAUSED
            assert await watcher.round() == []  # a paused job is not watched
            return str(created["id"])

    job_id = asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
        event = s.scalars(select(PrintMonitorEvent)).one()
        assert event.event_type is MonitorEventType.NOZZLE_CLOG
        assert event.details["condition"] == "thermal_runaway"
        assert event.snapshot_key is not None
        assert event.snapshot_key.startswith(f"snapshots/{job_id}/")
        intents = sorted(
            c.intent
            for c in s.scalars(select(DeviceCommand).where(DeviceCommand.device_id == printer))
        )
    assert intents == ["print_pause", "print_start", "printer_cooldown"]
    assert lab.container.artifacts is not None
    evidence = json.loads(b"".join(lab.container.artifacts.read_chunks(event.snapshot_key)))
    assert evidence["verdict"]["condition"] == "thermal_runaway"
    assert len(evidence["telemetry"]) >= 2


def test_a_heater_set_past_the_printers_limit_pauses_and_cools_it_whatever_set_it(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]  # declares a 300 °C nozzle
    key = lab.upload("abs.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            created = await lab.start(wired, printer, key)
            watcher = bootstrap.print_watcher(wired)
            assert watcher is not None
            simulator = fleet.devices[printer]
            simulator.tick(120)
            assert simulator.snapshot()["state"] == "printing"
            # Set at the printer (its screen, a macro, a console): no command of ours.
            simulator.nozzle_target = 480  # type: ignore[attr-defined]
            raised = []
            for _ in range(3):  # it heats steadily towards its target: no runaway
                simulator.tick(10)
                await asyncio.to_thread(fleet.report)
                await asyncio.sleep(0.05)
                raised += await watcher.round()
            assert [(v.condition.value, v.severity.value, v.subject) for v in raised] == [
                ("temperature_limit", "failure", "nozzle")
            ]
            await lab.work_queue(wired)  # the pause, then the cooldown
            snapshot = fleet.devices[printer].snapshot()
            assert snapshot["state"] == "paused"
            assert snapshot["nozzle"]["target"] == 0
            assert snapshot["bed"]["target"] == 0
            await bootstrap.print_tracker(wired).round()
            assert lab.job(created["id"]).status is FabricationStatus.PAUSED
            return str(created["id"])

    job_id = asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
        event = s.scalars(select(PrintMonitorEvent)).one()
        assert event.details["condition"] == "temperature_limit"
        assert event.details["reasons"][0].startswith(
            "nozzle target is 480 °C, above this printer's 300 °C limit"
        )
        assert event.snapshot_key is not None
        assert event.snapshot_key.startswith(f"snapshots/{job_id}/")
        commands = {
            c.intent: c.status.value
            for c in s.scalars(select(DeviceCommand).where(DeviceCommand.device_id == printer))
        }
    assert commands == {
        "print_start": "acked",
        "print_pause": "acked",
        "printer_cooldown": "acked",
    }


def test_spaghetti_seen_by_the_detector_pauses_the_print_with_the_camera_snapshot(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]
    key = lab.upload("benchy.gcode")
    with CameraPeer() as camera, ObicoPeer() as detector:
        snapshot_url = camera.serve("/farm/snapshot.jpg")
        with lab.database.unit_of_work() as s:
            farm_cam = s.get(Device, lab["farm-cam"])
            assert farm_cam is not None
            farm_cam.connection = {"snapshot_url": snapshot_url}
        settings = lab.container.settings.model_copy(
            update={"monitoring": MonitoringSettings(detector_url=detector.base_url)}
        )

        async def scenario() -> list[str]:
            port = free_port()
            address = BrokerAddress("127.0.0.1", port)
            async with (
                embedded_broker(port),
                running_bus(address) as bus,
                lab_fleet(lab.container, bus) as fleet,
            ):
                wired = replace(
                    lab.container,
                    drivers=bootstrap.device_drivers(bus, lab.container.settings),
                    bus=bus,
                    settings=settings,
                )
                created = await lab.start(wired, printer, key)
                watcher = bootstrap.print_watcher(wired)
                assert watcher is not None
                for _ in range(40):  # a clean print: the first 30 frames are never judged
                    assert await watcher.round() == []
                detector.script(snapshot_url, [("failure", 0.9, (0.5, 0.5, 0.2, 0.2))] * 3)
                raised = []
                for _ in range(6):
                    raised += await watcher.round()
                await lab.work_queue(wired)
                assert fleet.devices[printer].snapshot()["state"] == "paused"
                return [f"{v.condition.value}/{v.severity.value}" for v in raised] + [
                    str(created["id"])
                ]

        *alerts, job_id = asyncio.run(scenario())
    assert alerts == ["spaghetti/warning", "spaghetti/failure"]
    with lab.database.unit_of_work() as s:
        events = s.scalars(select(PrintMonitorEvent).order_by(PrintMonitorEvent.id)).all()
        assert [e.event_type for e in events] == [MonitorEventType.SPAGHETTI_DETECTED] * 2
        failure = events[1]
        assert failure.details["severity"] == "failure"
        assert failure.snapshot_key is not None
        assert failure.snapshot_key.startswith(f"snapshots/{job_id}/")
        assert failure.snapshot_key.endswith("-camera.jpg")


def _first_layer_events(database: Database, job_id: str) -> list[PrintMonitorEvent]:
    with database.unit_of_work() as s:
        return list(
            s.scalars(
                select(PrintMonitorEvent).where(
                    PrintMonitorEvent.fabrication_job_id == UUID(job_id),
                    PrintMonitorEvent.event_type == MonitorEventType.FIRST_LAYER_OK,
                )
            )
        )


def test_the_watcher_records_first_layer_ok_once_the_print_is_past_its_first_layer(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("layers.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            created = await lab.start(wired, printer, key)
            job_id = str(created["id"])
            watcher = bootstrap.print_watcher(wired)
            assert watcher is not None
            simulator = fleet.devices[printer]

            async def printed(seconds: float) -> list[PrintMonitorEvent]:
                simulator.tick(seconds)
                await asyncio.to_thread(fleet.report)
                await asyncio.sleep(0.05)  # the new state reaches the driver over MQTT
                assert await watcher.round() == []
                return _first_layer_events(lab.database, job_id)

            assert await printed(120) == []  # heated up, printing from 0 %
            assert await printed(20) == []  # 3 %: still on the first layer
            events = await printed(20)  # 7 %, past the 5 % threshold
            assert [e.details["progress"] for e in events] == [0.0667]
            assert len(await printed(20)) == 1  # recorded once
            restarted = bootstrap.print_watcher(wired)  # a new process: the database knows
            assert restarted is not None
            assert await restarted.round() == []
            assert len(_first_layer_events(lab.database, job_id)) == 1
            return job_id

    job_id = asyncio.run(scenario())
    (event,) = _first_layer_events(lab.database, job_id)
    assert event.confidence == 1.0
    assert event.details["threshold"] == 0.05


def test_a_print_with_a_failure_alert_gets_no_first_layer_ok(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]
    key = lab.upload("bad.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            created = await lab.start(wired, printer, key)
            job_id = str(created["id"])
            shot = await asyncio.to_thread(
                lab.client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=lab.operator.headers,
            )
            failure = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/jobs/{job_id}/monitor-events",
                json={
                    "eventType": "spaghetti_detected",
                    "confidence": 0.9,
                    "snapshotKey": shot.json()["snapshotKey"],
                },
                headers=lab.operator.headers,
            )
            assert failure.status_code == 201, failure.text
            # The pause is not sent yet: the job still prints, past its first layer.
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            fleet.devices[printer].tick(120)  # heated up
            fleet.devices[printer].tick(60)  # 10 %
            assert fleet.devices[printer].snapshot()["progress"] > 0.05
            await asyncio.to_thread(fleet.report)
            await asyncio.sleep(0.05)
            watcher = bootstrap.print_watcher(wired)
            assert watcher is not None
            await watcher.round()
            return job_id

    assert _first_layer_events(lab.database, asyncio.run(scenario())) == []
