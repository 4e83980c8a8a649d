"""The console's operations view on PostgreSQL (issue 18, item 2): every figure is an
aggregate over the window — routing per tier and per day with the biggest spender against
the budget, the decisions list with its filters and cursor, the job queue, devices and
commands, the print monitors' alerts — scoped like the routing API, and rendered as a page
whose charts carry the same per-day series. (Charts drawn in a real browser:
tests/e2e/test_console_operations.py; the 100,000-decision render time:
benchmarks/console_bench.py.)"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADCharge,
    CADJob,
    Device,
    DeviceCommand,
    FabricationJob,
    PrintMonitorEvent,
    RoutingDecision,
    Zone,
)
from kittylab.api.web_auth import SESSION_COOKIE, limits
from kittylab.domain.enums import (
    CADPolicyMode,
    CADProvider,
    CommandStatus,
    DeviceKind,
    HazardLevel,
    MonitorEventType,
    OnlineState,
    Tier,
)
from kittylab.people import web_sessions
from kittylab.web import operations
from tests.integration.conftest import Person

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def _decision(
    session: Session,
    who: UUID | None,
    tier: Tier,
    latency_ms: int,
    *,
    at: datetime,
    cost: str = "0",
    cache: str | None = None,
    reason: str | None = None,
    intent: str = "light_on",
) -> None:
    session.add(
        RoutingDecision(
            request_id=uuid4(),
            input_hash="0" * 64,
            selected_tier=tier,
            confidence=0.9,
            confidence_factors={},
            cost_estimate=Decimal(cost),
            latency_ms=latency_ms,
            escalation_reason=reason,
            performed_by=who,
            details={"cache": cache, "intent": intent, "outcome": "answered", "channel": "ipad"},
            created_at=at,
        )
    )


@pytest.fixture
def history(database: Database, admin: Person, operator: Person) -> dict[str, UUID]:
    """Two people's decisions over three days (and one outside a week), an online CAD
    call, a lamp with commands, a printer whose print the monitors flagged."""
    today, two_days_ago = NOW - timedelta(hours=2), NOW - timedelta(days=2)
    with database.unit_of_work() as s:
        _decision(s, operator.user_id, Tier.LOCAL, 100, at=two_days_ago, cache="miss")
        _decision(
            s, operator.user_id, Tier.FRONTIER, 900, at=two_days_ago, cost="0.40",
            reason="not confident enough", intent="ask",
        )  # fmt: skip
        _decision(s, admin.user_id, Tier.LOCAL, 50, at=two_days_ago, cache="hit")
        _decision(s, admin.user_id, Tier.MCP, 300, at=today, cost="0.70", intent="ask")
        _decision(s, admin.user_id, Tier.FRONTIER, 1000, at=today, cost="0.50", intent="ask")
        _decision(s, admin.user_id, Tier.FRONTIER, 5000, at=NOW - timedelta(days=10), cost="9")
        job = CADJob(
            prompt="a cube", policy_mode=CADPolicyMode.ONLINE, requested_by=operator.user_id
        )
        s.add(job)
        s.flush()
        for status, cost in (("settled", "0.30"), ("released", "0")):
            s.add(
                CADCharge(
                    cad_job_id=job.id, user_id=operator.user_id, provider=CADProvider.ZOO,
                    estimate_usd=Decimal("0.30"), cost_usd=Decimal(cost), status=status,
                    created_at=today,
                )
            )  # fmt: skip
        zone = Zone(name="farm", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        lamp = Device(
            external_id="lamp", integration="simulated", display_name="Lamp",
            kind=DeviceKind.LIGHT, zone_id=zone.id, online_state=OnlineState.ONLINE,
            last_seen=NOW - timedelta(seconds=5),
        )  # fmt: skip
        printer = Device(
            external_id="mk4", integration="simulated", display_name="MK4",
            kind=DeviceKind.PRINTER, zone_id=zone.id, online_state=OnlineState.OFFLINE,
            last_seen=NOW - timedelta(hours=3),
        )  # fmt: skip
        s.add_all([lamp, printer])
        s.flush()
        for status, at, reason in (
            (CommandStatus.ACKED, today, None),
            (CommandStatus.ACKED, two_days_ago, None),
            (CommandStatus.FAILED, today, "the device did not answer within 10 s"),
            (CommandStatus.PENDING, today, None),
        ):
            s.add(
                DeviceCommand(
                    device_id=lamp.id, intent="light_on", payload={},
                    requested_by=operator.user_id, status=status, failure_reason=reason,
                    created_at=at,
                )
            )  # fmt: skip
        print_job = FabricationJob(
            device_id=printer.id, gcode_path="fabrication/x.gcode", requested_by=operator.user_id
        )
        s.add(print_job)
        s.flush()
        for event_type, severity, details, at in (
            (MonitorEventType.FIRST_LAYER_OK, "info", {}, two_days_ago),
            (MonitorEventType.SPAGHETTI_DETECTED, "failure", {}, today),
            (MonitorEventType.NOZZLE_CLOG, "warning", {"condition": "extrusion_stall"}, today),
        ):
            s.add(
                PrintMonitorEvent(
                    fabrication_job_id=print_job.id, event_type=event_type, confidence=0.9,
                    snapshot_key="snapshots/x.jpg", details={**details, "severity": severity},
                    occurred_at=at,
                )
            )  # fmt: skip
    return {"lamp": lamp.id, "printer": printer.id}


def _report(session: Session, viewer: UUID | None) -> operations.RoutingReport:
    since = operations.window_start(NOW, 7)
    days = operations.window_days(NOW, 7)
    return operations.read_routing(
        session, since, days, viewer=viewer, daily_budget=Decimal("1.00")
    )


def test_routing_is_summed_per_tier_and_day_over_the_window_only(
    database: Database, history: dict[str, UUID]
) -> None:
    with database.unit_of_work() as s:
        report = _report(s, viewer=None)
    assert len(report.days) == 7 and report.days[-1] == NOW.date()
    assert report.requests == 5  # the decision of ten days ago is outside
    assert report.local_share == pytest.approx(2 / 5)
    by_tier = {t.tier: t for t in report.tiers}
    assert by_tier[Tier.FRONTIER].requests == 2
    assert by_tier[Tier.FRONTIER].p50_ms == pytest.approx(950)
    assert by_tier[Tier.FRONTIER].p95_ms == pytest.approx(995)
    assert by_tier[Tier.LOCAL].spend == 0
    assert (report.cache_hits, report.cache_misses) == (1, 1)
    assert report.cache_hit_rate == pytest.approx(0.5)
    # Everyone's spend per day: the tiers' plus the online CAD call (not the released one).
    assert report.spend_on(NOW.date()) == Decimal("1.50")
    assert report.spend == Decimal("1.90")
    # The biggest spender today is ada (1.20); olivia's 0.30 of CAD is less.
    assert report.top_person_spend[NOW.date()] == Decimal("1.20")
    assert report.days_over_budget == [NOW.date()]


def test_someone_without_the_safety_or_admin_role_sees_only_their_own_routing(
    database: Database, history: dict[str, UUID], operator: Person
) -> None:
    with database.unit_of_work() as s:
        report = _report(s, viewer=operator.user_id)
        rows = operations.read_decisions(
            s, report.since, operations.DecisionFilters(), viewer=operator.user_id
        )
    assert report.requests == 2
    assert report.spend == Decimal("0.70")
    assert {r.person for r in rows} == {"olivia"}


def test_the_decisions_list_filters_and_pages_with_its_cursor(
    database: Database, history: dict[str, UUID]
) -> None:
    since = operations.window_start(NOW, 7)
    with database.unit_of_work() as s:
        frontier = operations.read_decisions(
            s, since, operations.DecisionFilters(tier=Tier.FRONTIER), viewer=None
        )
        hits = operations.read_decisions(
            s, since, operations.DecisionFilters(cache="hit"), viewer=None
        )
        escalated = operations.read_decisions(
            s, since, operations.DecisionFilters(escalated=True), viewer=None
        )
        olivia = operations.read_decisions(
            s, since, operations.DecisionFilters(person="olivia"), viewer=None
        )
        first = operations.read_decisions(
            s, since, operations.DecisionFilters(), viewer=None, limit=2
        )
        cursor = (first[1].created_at, first[1].id)
        rest = operations.read_decisions(
            s, since, operations.DecisionFilters(before=cursor), viewer=None
        )
    assert [r.latency_ms for r in frontier] == [1000, 900]
    assert [r.person for r in hits] == ["ada"]
    assert [r.escalation_reason for r in escalated] == ["not confident enough"]
    assert len(olivia) == 2
    assert len(first) == 3  # one more than asked: there are older ones
    assert {r.id for r in rest}.isdisjoint({r.id for r in first[:2]})
    assert len(first[:2]) + len(rest) == 5


def test_devices_commands_and_monitor_alerts_are_counted_in_the_window(
    database: Database, history: dict[str, UUID]
) -> None:
    since = operations.window_start(NOW, 7)
    with database.unit_of_work() as s:
        devices = operations.read_devices(s, since)
        monitoring = operations.read_monitoring(s, since)
    assert (devices.online, devices.total) == (1, 2)
    assert devices.stalest[0].name == "MK4"
    assert (devices.acked, devices.failed) == (2, 1)
    today = next(d for d in devices.commands if d.day == NOW.date())
    assert (today.acked, today.failed, today.open) == (1, 1, 1)
    assert devices.failure_reasons == [("the device did not answer within 10 s", 1)]
    kinds = {(k.kind, k.severity): k.count for k in monitoring.kinds}
    assert kinds == {
        ("spaghetti_detected", "failure"): 1,
        ("extrusion_stall", "warning"): 1,
        ("first_layer_ok", "info"): 1,
    }
    assert monitoring.alerts == 2
    assert monitoring.per_day[NOW.date()] == {"failure": 1, "warning": 1}


def test_a_waiting_background_job_is_counted_with_its_age(
    container: bootstrap.Container, database: Database
) -> None:
    assert container.cad.queue is not None
    container.cad.queue.defer_cad_job(uuid4())  # no worker runs here: it waits
    with database.unit_of_work() as s:
        queues = operations.read_queues(s, operations.window_start(NOW, 7))
    row = next(r for r in queues.rows if r.task == "generate cad")
    assert (row.waiting, row.running) == (1, 0)
    assert queues.waiting == 1
    assert queues.oldest_waiting is not None and queues.oldest_waiting >= 0


def _signed_in(client: TestClient, container: bootstrap.Container, person: Person) -> None:
    with container.database.unit_of_work() as s:
        issued = web_sessions.start(
            s, person.user_id, passkey_id=None, limits=limits(container.settings.console),
            now=container.clock(),
        )  # fmt: skip
    client.cookies.set(SESSION_COOKIE, issued.token)


def test_the_page_shows_the_figures_and_carries_the_charts_series(
    client: TestClient, container: bootstrap.Container, history: dict[str, UUID], admin: Person
) -> None:
    container.clock = lambda: NOW
    _signed_in(client, container, admin)
    page = client.get("/operations", headers={"Host": "localhost"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "40 %" in html  # served locally
    assert "someone reached the $1.00 daily budget on 1 day" in html
    assert "spaghetti detected" in html and "extrusion stall" in html
    charts = json.loads(
        re.search(r'<script type="application/json" id="ops-data">(.*?)</script>', html, re.S)[1]  # type: ignore[index]
    )
    assert len(charts["days"]) == 7
    assert charts["routing"]["requests"][-1] == 2
    assert charts["routing"]["localShare"][-3] == pytest.approx(66.67)
    assert charts["spend"]["topPerson"][-1] == pytest.approx(1.2)
    assert charts["alerts"]["failure"][-1] == 1
    # Three figures per tier, not a row per decision.
    assert html.count('<tr class="tier-') == 5

    filtered = client.get(
        "/console/operations/decisions",
        params={"tier": "frontier", "cache": "", "person": "", "days": 7},
        headers={"Host": "localhost"},
    )
    assert filtered.status_code == 200
    assert filtered.text.count('<tr class="tier-frontier">') == 2
    assert '<tr class="tier-local">' not in filtered.text
    bad = client.get("/console/operations/decisions", params={"tier": "warp"})
    assert (bad.status_code, bad.json()["field"]) == (422, "tier")
    cursor = client.get("/console/operations/decisions", params={"before": "yesterday"})
    assert (cursor.status_code, cursor.json()["field"]) == (422, "before")
