"""Querying stored telemetry through the API by time range: ``since`` inclusive,
``until`` exclusive, both zoned."""

from __future__ import annotations

from datetime import timedelta, timezone
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, Zone
from kittylab.domain.enums import DeviceKind, HazardLevel
from tests.integration.conftest import Person


@pytest.fixture
def sensor(database: Database) -> UUID:
    with database.unit_of_work() as s:
        zone = Zone(name="print-farm", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        device = Device(
            external_id="farm-air",
            integration="simulated",
            display_name="Farm air",
            kind=DeviceKind.SENSOR,
            zone_id=zone.id,
            capabilities={"sensor_read": {"type": "object"}},
        )
        s.add(device)
        s.flush()
        device_id: UUID = device.id
        return device_id


def test_telemetry_is_queried_by_time_range_since_inclusive_until_exclusive(
    container: bootstrap.Container, client: TestClient, operator: Person, sensor: UUID
) -> None:
    now = container.clock().replace(microsecond=0)
    hours = [now - timedelta(hours=h) for h in (4, 3, 2, 1)]
    batch = {
        "events": [
            {
                "deviceId": str(sensor),
                "topic": "air/pm25",
                "payload": {"hoursAgo": 4 - i},
                "recordedAt": at.isoformat(),
            }
            for i, at in enumerate(hours)
        ]
    }
    stored = client.post("/api/telemetry", json=batch, headers=operator.headers)
    assert stored.status_code == 202, stored.text

    def ago(since: int | None, until: int | None) -> list[int]:
        params: dict[str, str] = {"deviceId": str(sensor)}
        if since is not None:
            params["since"] = (now - timedelta(hours=since)).isoformat()
        if until is not None:
            params["until"] = (now - timedelta(hours=until)).isoformat()
        answer = client.get("/api/telemetry", params=params, headers=operator.headers)
        assert answer.status_code == 200, answer.text
        return sorted(e["payload"]["hoursAgo"] for e in answer.json()["items"])

    assert ago(None, None) == [1, 2, 3, 4]
    assert ago(3, None) == [1, 2, 3]  # at or after: the event exactly 3 h ago counts
    assert ago(None, 2) == [3, 4]  # before: the event exactly 2 h ago does not
    assert ago(3, 1) == [2, 3]
    assert ago(1, 3) == []  # an empty range, not an error
    other_zone = (now - timedelta(hours=3)).astimezone(timezone(timedelta(hours=-5)))
    same_instant = client.get(
        "/api/telemetry",
        params={"deviceId": str(sensor), "since": other_zone.isoformat()},
        headers=operator.headers,
    )
    assert sorted(e["payload"]["hoursAgo"] for e in same_instant.json()["items"]) == [1, 2, 3]
    unreadable = client.get("/api/telemetry?since=yesterday", headers=operator.headers)
    assert (unreadable.status_code, unreadable.json()["field"]) == (422, "since")


@pytest.mark.parametrize("name", ["since", "until"])
def test_a_time_without_a_zone_is_refused_naming_the_parameter(
    client: TestClient, operator: Person, name: str
) -> None:
    # Read in the server's zone it would silently shift the range by hours.
    answer = client.get(f"/api/telemetry?{name}=2026-01-01T00:00:00", headers=operator.headers)
    assert (answer.status_code, answer.json()["field"]) == (422, name)
    zoned = client.get(f"/api/telemetry?{name}=2026-01-01T00:00:00Z", headers=operator.headers)
    assert zoned.status_code == 200, zoned.text
