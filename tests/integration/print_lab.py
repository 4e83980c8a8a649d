"""The simulated lab for print-job tests: the demo manifest applied to the test database,
and the steps those tests take through the real API and workers (upload a file, create a
job, run the queue, read a job back, finish a print on a simulator)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import GenerateRequest
from kittylab.config import CommandSettings
from kittylab.domain.enums import ArtifactType
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.worker.run import build_job_app, run_worker
from tests.integration.conftest import Person
from tests.integration.live_bus import LabFleet

Row = TypeVar("Row")

GCODE = b"; a tiny job\nG28\nG1 X10 Y10\n" + b"G1 X20 Y20\n" * 50
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class SteppedClock:
    """A clock the test moves by hand (``clock.now += …``)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def apply_demo_lab(
    container: bootstrap.Container, database: Database, manifest: Path
) -> dict[str, UUID]:
    """Apply the lab manifest; returns the devices' ids by their external id."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(manifest), container.clock())
    with database.unit_of_work() as s:
        return {d.external_id: d.id for d in s.scalars(select(Device))}


def upload(client: TestClient, who: Person, name: str, content: bytes = GCODE) -> str:
    """Upload a print file; returns its file key (fails the test unless it is stored)."""
    answer = client.put(f"/api/fabrication/files/{name}", content=content, headers=who.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["size"] == len(content)
    key: str = answer.json()["fileKey"]
    return key


def post_job(client: TestClient, who: Person, device: UUID, key: str) -> dict[str, Any]:
    """Create a print job for an uploaded file; returns the accepted job (202)."""
    answer = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(device), "fileKey": key},
        headers=who.headers,
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def detached(database: Database, table: type[Row], row_id: str) -> Row:
    """The row as the database holds it now, detached (fails the test when it is missing)."""
    with database.unit_of_work() as s:
        row = s.get(table, UUID(row_id))
        assert row is not None
        s.expunge(row)
        return row


def job(database: Database, job_id: str) -> FabricationJob:
    return detached(database, FabricationJob, job_id)


FAST_COMMANDS = CommandSettings(ack_timeout_seconds=3, poll_interval_seconds=0.05)


async def work_queue(
    container: bootstrap.Container, database_url: str, commands: CommandSettings = FAST_COMMANDS
) -> None:
    """Run a worker until the queue is empty, with ``commands`` (by default fast command
    confirmation, for the simulators)."""
    settings = container.settings.model_copy(update={"commands": commands})
    context = bootstrap.job_context(replace(container, settings=settings))
    app = build_job_app(database_url)
    async with app.open_async():
        await run_worker(app, context, concurrency=1, wait=False)


async def finish_print(fleet: LabFleet, printer: UUID) -> None:
    """Run the printer's simulator to the end of its print and report it (stored)."""
    simulator = fleet.devices[printer]
    for _ in range(40):
        simulator.tick(60)
    assert simulator.snapshot()["state"] == "completed"
    await asyncio.to_thread(fleet.report)


@dataclass(frozen=True)
class PrintLab:
    """The demo lab on the test database, with the wired app and an operator to use it.
    ``lab["prusa-mk4"]`` is a device's id."""

    container: bootstrap.Container
    client: TestClient
    operator: Person
    database: Database
    database_url: str
    devices: dict[str, UUID]

    def __getitem__(self, external_id: str) -> UUID:
        return self.devices[external_id]

    def upload(self, name: str, content: bytes = GCODE) -> str:
        """:func:`upload`, by the operator."""
        return upload(self.client, self.operator, name, content)

    def post_job(self, device: UUID, key: str) -> dict[str, Any]:
        """:func:`post_job`, by the operator."""
        return post_job(self.client, self.operator, device, key)

    def post_cad_job(self, device: UUID) -> tuple[UUID, dict[str, Any]]:
        """Generate a 40 × 30 × 5 mm plate offline and create a print job from its STL;
        returns the STL artifact's id and the accepted job (202)."""
        result = self.container.cad.generate(
            GenerateRequest(
                prompt="a 40 by 30 plate, 5 mm thick",
                policy_mode=PolicyMode.OFFLINE,
                requested_by=self.operator.user_id,
            )
        )
        stl = next(a for a in result.artifacts if a.artifact_type is ArtifactType.STL)
        answer = self.client.post(
            "/api/fabrication/jobs",
            json={"deviceId": str(device), "cadArtifactId": str(stl.id)},
            headers=self.operator.headers,
        )
        assert answer.status_code == 202, answer.text
        body: dict[str, Any] = answer.json()
        return stl.id, body

    def job(self, job_id: str) -> FabricationJob:
        return job(self.database, job_id)

    def prepared(self, device: UUID, key: str) -> FabricationJob:
        """Create a job for ``key`` on ``device`` and run the queue with no bus (the job is
        prepared, or refused); returns the job as it then stands."""
        created = self.post_job(device, key)
        asyncio.run(self.work_queue())
        return self.job(created["id"])

    async def work_queue(self, container: bootstrap.Container | None = None) -> None:
        """:func:`work_queue` with ``container`` (the live lab's), else the test's."""
        await work_queue(container or self.container, self.database_url)

    async def start(self, wired: bootstrap.Container, printer: UUID, key: str) -> dict[str, Any]:
        """Create a job for ``key`` on ``printer``, run the queue (it is prepared and
        started) and one tracker round (it is seen printing); returns the created job."""
        created = await asyncio.to_thread(self.post_job, printer, key)
        await self.work_queue(wired)
        await bootstrap.print_tracker(wired).round()
        return created
