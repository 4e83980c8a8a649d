"""Simulated cameras give real pictures (issue 14), and "show me the laser camera" answers
with one kept as an artifact (issue 16, item 2): the demo lab on a live broker, the
simulator's cameras served on loopback as an IP camera serves its snapshot URL, and the
application as ``bootstrap`` wires it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, User
from kittylab.adapters.detectors.snapshots import HttpSnapshotSource
from kittylab.config import CommandSettings, Settings
from kittylab.devices import dispatch
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CommandStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.monitoring import cameras
from kittylab.simulator.cameras import CameraStudio, serve_cameras
from tests.integration.conftest import Person
from tests.integration.live_bus import free_port, live_lab

CAMERA_PORT = free_port()
FAST = CommandSettings(ack_timeout_seconds=3, poll_interval_seconds=0.05)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    sim = s.simulator.model_copy(update={"camera_port": CAMERA_PORT})
    return s.model_copy(update={"simulator": sim})


def _png(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_a_camera_snapshot_is_a_drawing_of_its_zone_and_the_conversation_shows_it(
    container: bootstrap.Container, client: TestClient, database: Database, demo_lab_path: Path,
    operator: Person,
) -> None:  # fmt: skip
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        ada = s.scalars(select(User.id).where(User.username == "ada")).one()
        farm_cam = s.scalars(select(Device.id).where(Device.external_id == "farm-cam")).one()
        laser_cam = s.scalars(select(Device.id).where(Device.external_id == "laser-cam")).one()
        # Every simulated camera has the simulator's snapshot URL, and only those.
        base = container.settings.simulator.camera_base_url
        urls = dict(cameras.snapshot_urls(s, simulated=base))
    assert urls["farm-cam"] == f"http://127.0.0.1:{CAMERA_PORT}/cameras/farm-cam/snapshot.png"
    assert set(urls) == {"farm-cam", "laser-cam", "welding-cam"}
    source = HttpSnapshotSource(timeout=5)

    async def scenario() -> None:
        async with live_lab(container) as lab:
            fleet = lab.fleet.fleet
            studio = CameraStudio(fleet, f"http://127.0.0.1:{CAMERA_PORT}", utcnow)
            server = await serve_cameras(studio, "127.0.0.1", CAMERA_PORT)
            try:
                live = await source.fetch(urls["farm-cam"])
                assert live.content_type == "image/png" and _png(live.data) == (640, 360)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{CAMERA_PORT}") as http:
                    # A light is no camera, a still never taken is nothing, and only GET.
                    assert (await http.get("/cameras/farm-lights/snapshot.png")).status_code == 404
                    assert (await http.get("/cameras/farm-cam/snapshots/9.png")).status_code == 404
                    assert (await http.post("/cameras/farm-cam/snapshot.png")).status_code == 405

                # camera_snapshot: the camera reports where the still it took is served.
                with database.unit_of_work() as s:
                    command = dispatch.submit(
                        s, device_id=farm_cam, intent="camera_snapshot", payload={},
                        requested_by=ada, now=container.clock(),
                    )  # fmt: skip
                outcome = await dispatch.dispatch(
                    database, lab.wired.drivers, command.id, FAST, container.clock
                )
                assert outcome.status is CommandStatus.ACKED, outcome.reason
                state = fleet.devices["farm-cam"].snapshot()
                assert state["snapshots_taken"] == 1
                still = await source.fetch(state["last_snapshot_url"])
                assert _png(still.data) == (640, 360)

                # "show me the laser camera": a picture taken now, kept, linked and served.
                answer = await asyncio.to_thread(
                    client.post,
                    "/api/query",
                    json={"channel": "cli", "input": {"text": "show me the laser camera"}},
                    headers=operator.headers,
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                [image] = body["images"]
                assert image["device"] == "laser-cam"
                assert image["url"].startswith(f"/api/devices/{laser_cam}/pictures/")
                assert image["url"] in body["replies"][0]["text"]
                picture = await asyncio.to_thread(
                    client.get, image["url"], headers=operator.headers
                )
                assert picture.status_code == 200
                assert picture.headers["content-type"] == "image/png"
                assert _png(picture.content) == (640, 360)
                key = image["url"].split("/api/devices/")[1].replace("/pictures/", "/")
                assert container.artifacts.exists(f"cameras/{key}")
                # Only a name it gave is served; anyone else's token reads nothing.
                missing = await asyncio.to_thread(
                    client.get, f"/api/devices/{laser_cam}/pictures/../x.png",
                    headers=operator.headers,
                )  # fmt: skip
                assert missing.status_code == 404
                unsigned = await asyncio.to_thread(client.get, image["url"])
                assert unsigned.status_code == 401
            finally:
                server.close()
                await server.wait_closed()

    asyncio.run(scenario())
