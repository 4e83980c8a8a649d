"""The lab's gauges, read from PostgreSQL when /metrics is scraped (issue 15)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from prometheus_client import REGISTRY

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.lab_metrics import refresh_lab_metrics, reset_throttles
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.test_audit_log import _append, _tamper


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_devices_are_counted_by_state_and_a_tampered_audit_chain_drops_the_gauge(
    container: bootstrap.Container, database: Database, database_url: str, demo_lab_path: Path
) -> None:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
    _append(database, 3)
    reset_throttles()
    refresh_lab_metrics(database, Decimal("1.00"), container.clock)
    states = ("online", "offline", "fault")
    kinds = ("printer", "light", "door", "power", "camera", "sensor")
    total = sum(_value("kittylab_devices", kind=k, state=s) or 0 for k in kinds for s in states)
    assert total == 18
    assert _value("kittylab_devices", kind="printer", state="fault") == 0  # a series at 0
    assert _value("kittylab_audit_chain_intact") == 1
    assert _value("kittylab_routing_daily_budget_usd") == 1.0
    assert _value("kittylab_routing_people_at_budget") == 0

    _tamper(database_url, 'UPDATE audit_log SET details = \'{"reason": "nothing"}\' WHERE seq = 2')
    refresh_lab_metrics(database, Decimal("1.00"), container.clock)
    assert _value("kittylab_audit_chain_intact") == 1  # verified at most every 5 minutes
    reset_throttles()
    refresh_lab_metrics(database, Decimal("1.00"), container.clock)
    assert _value("kittylab_audit_chain_intact") == 0
