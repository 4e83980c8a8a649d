"""The lab through the API: the demo manifest applied by an admin, listed, paginated."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AccessPolicy, SafetyEvent
from kittylab.domain.enums import SafetyEventType
from kittylab.manifest import apply_manifest, parse_manifest
from tests.integration.conftest import Person


def _apply(client: TestClient, person: Person, manifest: str, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/lab/apply", json={"manifest": manifest, "dryRun": dry_run}, headers=person.headers
    )


def test_only_admin_changes_the_lab(
    client: TestClient, admin: Person, operator: Person, demo_lab_path: Path
) -> None:
    text = demo_lab_path.read_text()
    assert _apply(client, operator, text).status_code == 403
    first = _apply(client, admin, text)
    assert first.status_code == 200, first.text
    assert first.json()["tallies"]["devices"]["created"] == 18
    again = _apply(client, admin, text).json()
    assert again["changed"] is False
    assert again["tallies"]["devices"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 18,
        "retired": 0,
    }


def test_dry_run_reports_without_storing(
    client: TestClient, admin: Person, demo_lab_path: Path
) -> None:
    report = _apply(client, admin, demo_lab_path.read_text(), dry_run=True).json()
    assert report["dryRun"] is True and report["tallies"]["zones"]["created"] == 5
    assert client.get("/api/devices", headers=admin.headers).json()["items"] == []


def test_bad_manifest_is_422_with_line_and_field(client: TestClient, admin: Person) -> None:
    manifest = "version: 1\nzones:\n  - name: shop\n    hazard_level: extreme\n"
    response = _apply(client, admin, manifest)
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "zones[0].hazard_level"
    assert body["errors"][0]["line"] == "4"


def test_devices_page_through_with_cursors_without_repeats(
    client: TestClient, admin: Person, demo_lab_path: Path
) -> None:
    _apply(client, admin, demo_lab_path.read_text())
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/api/devices?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=admin.headers).json()
        seen += [d["externalId"] for d in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 18


def test_device_filters(client: TestClient, admin: Person, demo_lab_path: Path) -> None:
    _apply(client, admin, demo_lab_path.read_text())
    printers = client.get("/api/devices?kind=printer", headers=admin.headers).json()["items"]
    assert sorted(d["externalId"] for d in printers) == ["bambu-x1c", "prusa-mk4", "voron-24"]
    zones = client.get("/api/zones?hazardLevel=high", headers=admin.headers).json()["items"]
    assert sorted(z["name"] for z in zones) == ["laser-room", "welding-bay"]
    assert all(z["requiresDualConfirmation"] for z in zones)
    laser = next(z for z in zones if z["name"] == "laser-room")
    policies = client.get(f"/api/policies?zoneId={laser['id']}", headers=admin.headers).json()[
        "items"
    ]
    assert all(p["requiresDualConfirm"] for p in policies)
    assert policies and set(policies[0]["intents"]) >= {"door_unlock", "power_on"}


def test_device_connection_settings_are_not_exposed(
    client: TestClient, admin: Person, demo_lab_path: Path
) -> None:
    _apply(client, admin, demo_lab_path.read_text())
    device = client.get("/api/devices?limit=1", headers=admin.headers).json()["items"][0]
    assert "connection" not in device


def test_revoked_token_stops_working(client: TestClient, operator: Person, admin: Person) -> None:
    tokens = client.get(f"/api/users/{operator.user_id}/tokens", headers=operator.headers).json()
    [token] = tokens["items"]
    assert "token" not in token and "tokenHash" not in token
    url = f"/api/users/{operator.user_id}/tokens/{token['id']}"
    assert client.delete(url, headers={"Authorization": "Bearer kl_x"}).status_code == 401
    other = f"/api/users/{admin.user_id}/tokens/{token['id']}"
    assert client.delete(other, headers=admin.headers).status_code == 404  # not admin's token
    assert client.delete(url, headers=operator.headers).status_code == 204
    assert client.get("/api/me", headers=operator.headers).status_code == 401


def test_retired_policies_are_hidden_unless_asked_for(
    client: TestClient, admin: Person, demo_lab_path: Path, database: Database
) -> None:
    text = demo_lab_path.read_text()
    _apply(client, admin, text)
    with database.unit_of_work() as s:
        policy = s.scalars(
            select(AccessPolicy).where(AccessPolicy.name == "cnc-room-hazards")
        ).one()
        s.add(
            SafetyEvent(
                event_type=SafetyEventType.UNLOCK,
                zone_id=policy.zone_id,
                policy_id=policy.id,
                initiated_by=admin.user_id,
            )
        )
    start = text.index("  - name: cnc-room-hazards")
    end = text.index("  - name: laser-room-hazards")
    # Dropping a policy weakens safety: over the API it waits for a second person, so
    # the operator applies it on the host.
    assert _apply(client, admin, text[:start] + text[end:]).status_code == 202
    with database.unit_of_work() as s:
        report = apply_manifest(s, parse_manifest(text[:start] + text[end:]), datetime.now(UTC))
    assert report.policies.retired == 1
    live = client.get("/api/policies", headers=admin.headers).json()["items"]
    assert sorted(p["name"] for p in live) == ["laser-room-hazards", "welding-bay-hazards"]
    everything = client.get("/api/policies?includeRetired=true", headers=admin.headers).json()[
        "items"
    ]
    retired = [p for p in everything if p["retiredAt"]]
    assert [p["name"] for p in retired] == ["cnc-room-hazards"]
