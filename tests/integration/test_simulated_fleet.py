from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.conftest import Person


def test_demo_lab_devices_report_state_and_come_online(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    demo_lab_path: Path,
    admin: Person,
) -> None:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
    fleet = bootstrap.simulated_fleet(container)
    fleet.reload()
    assert len(fleet.devices) == 18
    fleet.advance(5.0)
    assert fleet.report() == 18

    devices = client.get("/api/devices?limit=100", headers=admin.headers).json()["items"]
    assert {d["onlineState"] for d in devices} == {"online"}
    climate = next(d for d in devices if d["externalId"] == "farm-climate")
    state = client.get(f"/api/devices/{climate['id']}/state", headers=admin.headers).json()
    assert set(state["state"]) == {"temperature", "humidity"}
    assert state["reportedAt"] is not None
    door = next(d for d in devices if d["externalId"] == "welding-door")
    assert client.get(f"/api/devices/{door['id']}/state", headers=admin.headers).json()[
        "state"
    ] == {"locked": True}


def test_reload_follows_the_lab_and_keeps_device_state(
    container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        prusa_id = s.scalars(select(Device.id).where(Device.external_id == "prusa-mk4")).one()
        bench_id = s.scalars(select(Device.id).where(Device.external_id == "bench-lights")).one()
    fleet = bootstrap.simulated_fleet(container)
    fleet.reload()
    prusa = fleet.devices[prusa_id]
    prusa.handle("print_start", {"file": "bracket.gcode"})  # type: ignore[attr-defined]
    with database.unit_of_work() as s:
        bench = s.get(Device, bench_id)
        assert bench is not None
        bench.retired_at = container.clock()
    fleet.reload()
    assert bench_id not in fleet.devices
    assert fleet.devices[prusa_id] is prusa
    assert prusa.snapshot()["state"] == "heating"


def test_fleet_runner_survives_a_failing_report_and_keeps_going() -> None:
    import asyncio

    from kittylab.simulator.fleet import run_fleet

    class FlakyFleet:
        def __init__(self) -> None:
            self.reports = 0
            self.ticks = 0.0

        def reload(self) -> None:
            return None

        def advance(self, seconds: float) -> None:
            self.ticks += seconds

        def report(self) -> int:
            self.reports += 1
            if self.reports == 1:
                raise RuntimeError("database restarting")
            return 0

    fleet = FlakyFleet()

    async def run_briefly() -> None:
        task = asyncio.create_task(
            run_fleet(fleet, tick_seconds=0.01, report_every_seconds=0.02, reload_every_seconds=1)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run_briefly())
    assert fleet.reports >= 3
