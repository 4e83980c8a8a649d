"""The lab's state as Prometheus gauges, read from PostgreSQL when ``/metrics`` is scraped.

Counters (commands, notifications, telemetry) are counted where things happen; what only
the database knows — how many devices are offline, what the day's model spend is, whether
the audit chain is intact — is read here (the job queue's gauges are in
``adapters/jobs/metrics``). Each group is read at most once per its interval however often
Prometheus (or several of them) scrapes, and a database that blinks leaves the last values
in place rather than failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, RoutingDecision
from kittylab.domain.enums import OnlineState
from kittylab.records import audit

log = logging.getLogger(__name__)

DEVICES = Gauge(
    "kittylab_devices",
    "Devices in service (not retired), by kind and online state.",
    ["kind", "state"],
)
ROUTING_SPEND_TODAY = Gauge(
    "kittylab_routing_spend_today_usd",
    "Estimated spend on model tiers since midnight (server time), all people together.",
)
ROUTING_DAILY_BUDGET = Gauge(
    "kittylab_routing_daily_budget_usd", "Each person's daily budget for model tiers."
)
ROUTING_PEOPLE_AT_BUDGET = Gauge(
    "kittylab_routing_people_at_budget",
    "People whose spend today has reached their daily budget (their escalations are refused).",
)
AUDIT_CHAIN_INTACT = Gauge(
    "kittylab_audit_chain_intact",
    "1 when the last verification found the audit chain intact, 0 when it found a break.",
)
AUDIT_CHAIN_ENTRIES = Gauge(
    "kittylab_audit_chain_entries", "Entries in the audit chain at its last verification."
)
AUDIT_CHAIN_VERIFIED_AT = Gauge(
    "kittylab_audit_chain_verified_timestamp_seconds",
    "When the audit chain was last verified (Unix time).",
)
LAB_REFRESH_SECONDS = 10.0
"""Devices and spend: cheap grouped reads, at most this often."""
AUDIT_VERIFY_SECONDS = 300.0
"""The audit chain is walked whole (every entry re-hashed), so at most this often."""


class _Throttle:
    """Runs ``refresh`` at most once per ``interval`` seconds, one caller at a time; the
    others return at once with the values already in place."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -interval
        self._lock = threading.Lock()

    def __call__(self, refresh: Callable[[], None]) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            refresh()
        except SQLAlchemyError as exc:
            log.warning("metrics refresh failed", extra={"error": type(exc).__name__})
        finally:
            self._lock.release()


_lab_throttle = _Throttle(LAB_REFRESH_SECONDS)
_audit_throttle = _Throttle(AUDIT_VERIFY_SECONDS)


def refresh_lab_metrics(
    database: Database, daily_budget_usd: Decimal, clock: Callable[[], datetime]
) -> None:
    """Bring the gauges up to date (throttled; see the module doc)."""
    _lab_throttle(lambda: _read_lab(database, daily_budget_usd, clock()))
    _audit_throttle(lambda: _verify_audit(database))


def _read_lab(database: Database, daily_budget_usd: Decimal, now: datetime) -> None:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with database.unit_of_work() as session:
        devices = session.execute(
            select(Device.kind, Device.online_state, func.count())
            .where(Device.retired_at.is_(None))
            .group_by(Device.kind, Device.online_state)
        ).all()
        per_person = (
            select(func.sum(RoutingDecision.cost_estimate).label("spent"))
            .where(RoutingDecision.created_at >= midnight)
            .group_by(RoutingDecision.performed_by)
            .subquery()
        )
        spent, at_budget = session.execute(
            select(
                func.coalesce(func.sum(per_person.c.spent), 0),
                func.count().filter(per_person.c.spent >= daily_budget_usd),
            )
        ).one()
    DEVICES.clear()
    kinds = {kind for kind, _, _ in devices}
    for kind in kinds:  # every state of a kind present, so "0 offline" is a series too
        for state in OnlineState:
            DEVICES.labels(kind.value, state.value).set(0)
    for kind, state, count in devices:
        DEVICES.labels(kind.value, state.value).set(count)
    ROUTING_SPEND_TODAY.set(float(spent))
    ROUTING_DAILY_BUDGET.set(float(daily_budget_usd))
    ROUTING_PEOPLE_AT_BUDGET.set(at_budget)


def _verify_audit(database: Database) -> None:
    with database.unit_of_work() as session:
        report = audit.verify_chain(session)
    AUDIT_CHAIN_INTACT.set(1 if report.intact else 0)
    AUDIT_CHAIN_ENTRIES.set(report.entries)
    AUDIT_CHAIN_VERIFIED_AT.set(time.time())
    if not report.intact:
        log.error("the audit chain is broken: %s", "; ".join(map(str, report.breaks[:3])))


def reset_throttles() -> None:
    """Read everything again on the next scrape (tests)."""
    for throttle in (_lab_throttle, _audit_throttle):
        throttle._last = -throttle._interval
