"""What the operations view shows (issue 18, item 2), each part one or two SQL aggregates
over a time window (``days`` back from now), never the rows themselves:

- routing: requests, the share served locally, p50/p95 latency per tier (over the window
  and per day), the cache's hit rate, spend per day (the tiers' and the online CAD
  providers') against the per-person daily budget with the day's biggest spender;
- queues: procrastinate's background jobs waiting and running now by task, the oldest
  waiting, and those that finished in the window by outcome;
- devices: how many are online by kind, the ones seen longest ago, commands per day by
  outcome and the commonest failure reasons;
- print monitoring: the monitors' alerts by kind and severity, and per day.

The routing figures follow the API's rule (``GET /api/routing/summary``): the safety and
admin roles see everyone's decisions, anyone else only their own. The indexes of
migration 0019 keep each aggregate on the window's part of an index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Date,
    String,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADCharge,
    Device,
    DeviceCommand,
    PrintMonitorEvent,
    RoutingDecision,
    User,
    Zone,
)
from kittylab.domain.enums import CommandStatus, DeviceKind, OnlineState, Tier

STALEST_DEVICES = 8
FAILURE_REASONS = 5
DECISIONS_PAGE = 25
FINISHED_JOB_EVENTS = ("failed", "cancelled", "aborted")
"""What a finished job's events can say here: the worker deletes jobs that succeed."""


def _day(column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as the API's daily spend groups it."""
    return cast(func.timezone("UTC", column), Date)


def window_days(now: datetime, days: int) -> list[date]:
    """The ``days`` calendar days (UTC) of the window, today last."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def window_start(now: datetime, days: int) -> datetime:
    """Midnight (UTC) of the window's first day: whole days, so each day's figures are
    complete."""
    first = window_days(now, days)[0]
    return datetime.combine(first, time(0), tzinfo=UTC)


# --- routing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierRow:
    tier: Tier
    requests: int
    p50_ms: float | None
    p95_ms: float | None
    spend: Decimal


@dataclass(frozen=True)
class RoutingDay:
    day: date
    tier: Tier
    requests: int
    spend: Decimal
    p50_ms: float | None
    p95_ms: float | None
    cache_hits: int
    cache_misses: int


@dataclass
class RoutingReport:
    since: datetime
    days: list[date]
    everyone: bool
    """The safety and admin roles' view; else only the viewer's own decisions."""
    tiers: list[TierRow]
    daily: list[RoutingDay]
    cad_spend: dict[date, Decimal]
    top_person_spend: dict[date, Decimal]
    daily_budget: Decimal

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.tiers)

    @property
    def local_share(self) -> float | None:
        local = sum(t.requests for t in self.tiers if t.tier is Tier.LOCAL)
        return local / self.requests if self.requests else None

    @property
    def cache_hits(self) -> int:
        return sum(d.cache_hits for d in self.daily)

    @property
    def cache_misses(self) -> int:
        return sum(d.cache_misses for d in self.daily)

    @property
    def cache_hit_rate(self) -> float | None:
        asked = self.cache_hits + self.cache_misses
        return self.cache_hits / asked if asked else None

    @property
    def spend(self) -> Decimal:
        return sum((t.spend for t in self.tiers), Decimal(0)) + sum(
            self.cad_spend.values(), Decimal(0)
        )

    def spend_on(self, day: date) -> Decimal:
        routing = sum((d.spend for d in self.daily if d.day == day), Decimal(0))
        return routing + self.cad_spend.get(day, Decimal(0))

    @property
    def days_over_budget(self) -> list[date]:
        return [d for d, spent in self.top_person_spend.items() if spent >= self.daily_budget]


def read_routing(
    session: Session,
    since: datetime,
    days: list[date],
    *,
    viewer: UUID | None,
    daily_budget: Decimal,
) -> RoutingReport:
    """``viewer`` None: everyone's decisions; else only that person's."""
    where = [RoutingDecision.created_at >= since]
    if viewer is not None:
        where.append(RoutingDecision.performed_by == viewer)
    latency = RoutingDecision.latency_ms
    day = _day(RoutingDecision.created_at)
    tier = RoutingDecision.selected_tier
    cache = RoutingDecision.details["cache"].astext
    # One pass for both: each tier per day, and each tier over the window (its percentiles
    # cannot be made from the days'); ``grouping(day)`` is 1 on the window's rows.
    rows = session.execute(
        select(
            func.grouping(day),
            day,
            tier,
            func.count(),
            func.coalesce(func.sum(RoutingDecision.cost_estimate), 0),
            func.percentile_cont(0.5).within_group(latency),
            func.percentile_cont(0.95).within_group(latency),
            func.count().filter(cache == "hit"),
            func.count().filter(cache == "miss"),
        )
        .where(*where)
        .group_by(func.grouping_sets(tuple_(day, tier), tuple_(tier)))
    ).all()
    tiers = sorted(
        (TierRow(t, n, p50, p95, Decimal(s)) for g, _, t, n, s, p50, p95, _, _ in rows if g),
        key=lambda row: list(Tier).index(row.tier),
    )
    daily = sorted(
        (
            RoutingDay(d, t, n, Decimal(s), p50, p95, h, m)
            for g, d, t, n, s, p50, p95, h, m in rows
            if not g
        ),
        key=lambda row: (row.day, list(Tier).index(row.tier)),
    )
    cad_where = [CADCharge.created_at >= since, CADCharge.status != "released"]
    if viewer is not None:
        cad_where.append(CADCharge.user_id == viewer)
    cad_day = _day(CADCharge.created_at)
    cad_spend = {
        d: Decimal(s)
        for d, s in session.execute(
            select(cad_day, func.sum(CADCharge.cost_usd)).where(*cad_where).group_by(cad_day)
        )
    }
    return RoutingReport(
        since=since,
        days=days,
        everyone=viewer is None,
        tiers=tiers,
        daily=daily,
        cad_spend=cad_spend,
        top_person_spend=_top_person_spend(session, since, viewer),
        daily_budget=daily_budget,
    )


def _top_person_spend(
    session: Session, since: datetime, viewer: UUID | None
) -> dict[date, Decimal]:
    """Per day, the most one person spent (the tiers' calls and online CAD together, as
    the budget counts them): the figure to hold against the per-person budget."""
    routing_where = [RoutingDecision.created_at >= since, RoutingDecision.performed_by.is_not(None)]
    cad_where = [
        CADCharge.created_at >= since,
        CADCharge.status != "released",
        CADCharge.user_id.is_not(None),
    ]
    if viewer is not None:
        routing_where.append(RoutingDecision.performed_by == viewer)
        cad_where.append(CADCharge.user_id == viewer)
    spent = union_all(
        select(
            _day(RoutingDecision.created_at).label("day"),
            RoutingDecision.performed_by.label("who"),
            RoutingDecision.cost_estimate.label("cost"),
        ).where(*routing_where),
        select(
            _day(CADCharge.created_at).label("day"),
            CADCharge.user_id.label("who"),
            CADCharge.cost_usd.label("cost"),
        ).where(*cad_where),
    ).subquery()
    per_person = (
        select(spent.c.day, spent.c.who, func.sum(spent.c.cost).label("spent"))
        .group_by(spent.c.day, spent.c.who)
        .subquery()
    )
    rows = session.execute(
        select(per_person.c.day, func.max(per_person.c.spent)).group_by(per_person.c.day)
    )
    return {d: Decimal(s) for d, s in rows}


@dataclass(frozen=True)
class DecisionFilters:
    tier: Tier | None = None
    cache: str | None = None
    """``hit`` or ``miss``."""
    escalated: bool = False
    """Only decisions with an escalation reason."""
    person: str | None = None
    """A username."""
    before: tuple[datetime, UUID] | None = None
    """Keyset cursor: decisions older than this (created_at, id)."""


@dataclass(frozen=True)
class DecisionRow:
    id: UUID
    created_at: datetime
    person: str | None
    tier: Tier
    confidence: float
    latency_ms: int
    cost: Decimal
    cache: str | None
    intent: str | None
    outcome: str | None
    channel: str | None
    escalation_reason: str | None


def read_decisions(
    session: Session,
    since: datetime,
    filters: DecisionFilters,
    *,
    viewer: UUID | None,
    limit: int = DECISIONS_PAGE,
) -> list[DecisionRow]:
    """The newest decisions in the window that pass ``filters`` (``limit`` + 1 are read,
    so the caller knows whether there are older ones)."""
    stmt = (
        select(RoutingDecision, User.username)
        .outerjoin(User, User.id == RoutingDecision.performed_by)
        .where(RoutingDecision.created_at >= since)
    )
    if viewer is not None:
        stmt = stmt.where(RoutingDecision.performed_by == viewer)
    if filters.tier is not None:
        stmt = stmt.where(RoutingDecision.selected_tier == filters.tier)
    if filters.cache is not None:
        stmt = stmt.where(RoutingDecision.details["cache"].astext == filters.cache)
    if filters.escalated:
        stmt = stmt.where(RoutingDecision.escalation_reason.is_not(None))
    if filters.person:
        stmt = stmt.where(User.username == filters.person)
    if filters.before is not None:
        at, decision_id = filters.before
        stmt = stmt.where(
            or_(
                RoutingDecision.created_at < at,
                and_(RoutingDecision.created_at == at, RoutingDecision.id < decision_id),
            )
        )
    rows = session.execute(
        stmt.order_by(RoutingDecision.created_at.desc(), RoutingDecision.id.desc()).limit(limit + 1)
    ).all()
    found = []
    for decision, username in rows:
        details = decision.details
        found.append(
            DecisionRow(
                id=decision.id,
                created_at=decision.created_at,
                person=username,
                tier=decision.selected_tier,
                confidence=decision.confidence,
                latency_ms=decision.latency_ms,
                cost=decision.cost_estimate,
                cache=details.get("cache"),
                intent=details.get("intent"),
                outcome=details.get("outcome"),
                channel=details.get("channel"),
                escalation_reason=decision.escalation_reason,
            )
        )
    return found


# --- queues --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    task: str
    waiting: int
    running: int
    failed: int
    """Failed in the window (the worker deletes jobs that succeed, so those are not
    counted)."""
    cancelled: int


@dataclass
class QueueReport:
    rows: list[QueueRow]
    oldest_waiting_seconds: dict[str, float]
    """By queue: how long the oldest job that is due has waited."""

    @property
    def waiting(self) -> int:
        return sum(r.waiting for r in self.rows)

    @property
    def running(self) -> int:
        return sum(r.running for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rows)

    @property
    def oldest_waiting(self) -> float | None:
        return max(self.oldest_waiting_seconds.values(), default=None)


# A job waits from when it was deferred, or from when it fell due if it was scheduled for
# later (as ``adapters/jobs/metrics`` reads it for Prometheus).
_NOW = text(
    "SELECT task_name, status::text, count(*) FROM procrastinate_jobs "
    "WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
)
_FINISHED = text(
    "SELECT j.task_name, e.type::text, count(*) FROM procrastinate_events e "
    "JOIN procrastinate_jobs j ON j.id = e.job_id "
    "WHERE e.at >= :since AND e.type::text = ANY(:types) GROUP BY 1, 2"
)
_OLDEST_WAITING = text(
    "SELECT j.queue_name, extract(epoch FROM now() - min(coalesce(j.scheduled_at, d.at))) "
    "FROM procrastinate_jobs j "
    "LEFT JOIN LATERAL (SELECT min(e.at) AS at FROM procrastinate_events e "
    "WHERE e.job_id = j.id AND e.type = 'deferred') d ON true "
    "WHERE j.status = 'todo' AND coalesce(j.scheduled_at, d.at) <= now() "
    "GROUP BY j.queue_name"
)


def _task_words(name: str) -> str:
    return name.rsplit(":", 1)[-1].replace("_", " ")


def read_queues(session: Session, since: datetime) -> QueueReport:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for task, status, n in session.execute(_NOW):
        counts[task][status] += n
    finished = session.execute(_FINISHED, {"since": since, "types": list(FINISHED_JOB_EVENTS)})
    for task, status, n in finished:
        counts[task][status] += n
    rows = [
        QueueRow(
            task=_task_words(task),
            waiting=c["todo"],
            running=c["doing"],
            failed=c["failed"],
            cancelled=c["cancelled"] + c["aborted"],
        )
        for task, c in sorted(counts.items())
    ]
    oldest = {queue: max(0.0, float(age or 0)) for queue, age in session.execute(_OLDEST_WAITING)}
    return QueueReport(rows, oldest)


# --- devices -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindRow:
    kind: DeviceKind
    online: int
    offline: int
    fault: int

    @property
    def total(self) -> int:
        return self.online + self.offline + self.fault


@dataclass(frozen=True)
class SeenRow:
    name: str
    kind: DeviceKind
    zone: str
    online_state: OnlineState
    last_seen: datetime | None


@dataclass(frozen=True)
class CommandDay:
    day: date
    acked: int
    failed: int
    open: int


@dataclass
class DeviceReport:
    kinds: list[KindRow]
    stalest: list[SeenRow]
    commands: list[CommandDay]
    failure_reasons: list[tuple[str, int]]

    @property
    def online(self) -> int:
        return sum(k.online for k in self.kinds)

    @property
    def total(self) -> int:
        return sum(k.total for k in self.kinds)

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.commands)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.commands)


def read_devices(session: Session, since: datetime) -> DeviceReport:
    in_service = Device.retired_at.is_(None)
    by_kind: dict[DeviceKind, dict[OnlineState, int]] = defaultdict(lambda: defaultdict(int))
    for kind, state, n in session.execute(
        select(Device.kind, Device.online_state, func.count())
        .where(in_service)
        .group_by(Device.kind, Device.online_state)
    ):
        by_kind[kind][state] += n
    kinds = [
        KindRow(k, c[OnlineState.ONLINE], c[OnlineState.OFFLINE], c[OnlineState.FAULT])
        for k, c in sorted(by_kind.items(), key=lambda item: list(DeviceKind).index(item[0]))
    ]
    stalest = [
        SeenRow(name, kind, zone, state, seen)
        for name, kind, zone, state, seen in session.execute(
            select(
                Device.display_name, Device.kind, Zone.name, Device.online_state, Device.last_seen
            )
            .join(Zone, Zone.id == Device.zone_id)
            .where(in_service)
            .order_by(Device.last_seen.asc().nulls_first(), Device.display_name)
            .limit(STALEST_DEVICES)
        )
    ]
    day = _day(DeviceCommand.created_at)
    status = DeviceCommand.status
    commands = [
        CommandDay(d, acked, failed, open_)
        for d, acked, failed, open_ in session.execute(
            select(
                day,
                func.count().filter(status == CommandStatus.ACKED),
                func.count().filter(status == CommandStatus.FAILED),
                func.count().filter(status.in_([CommandStatus.PENDING, CommandStatus.SENT])),
            )
            .where(DeviceCommand.created_at >= since)
            .group_by(day)
            .order_by(day)
        )
    ]
    reasons = [
        (str(reason), int(n))
        for reason, n in session.execute(
            select(DeviceCommand.failure_reason, func.count().label("n"))
            .where(
                DeviceCommand.created_at >= since,
                DeviceCommand.status == CommandStatus.FAILED,
                DeviceCommand.failure_reason.is_not(None),
            )
            .group_by(DeviceCommand.failure_reason)
            .order_by(text("n DESC"), DeviceCommand.failure_reason)
            .limit(FAILURE_REASONS)
        )
    ]
    return DeviceReport(kinds, stalest, commands, reasons)


# --- print monitoring ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertKind:
    kind: str
    """The event type, or the watcher's condition when it names one (thermal runaway…)."""
    severity: str
    count: int
    last_at: datetime


@dataclass
class MonitoringReport:
    kinds: list[AlertKind]
    per_day: dict[date, dict[str, int]] = field(default_factory=dict)
    """Per day, alerts by severity (``failure``, ``warning``)."""

    @property
    def alerts(self) -> int:
        return sum(k.count for k in self.kinds if k.severity in ("failure", "warning"))


def read_monitoring(session: Session, since: datetime) -> MonitoringReport:
    severity = func.coalesce(PrintMonitorEvent.details["severity"].astext, literal("info"))
    kind_column = func.coalesce(
        PrintMonitorEvent.details["condition"].astext, cast(PrintMonitorEvent.event_type, String)
    )
    kinds = [
        AlertKind(k, s, n, last)
        for k, s, n, last in session.execute(
            select(kind_column, severity, func.count(), func.max(PrintMonitorEvent.occurred_at))
            .where(PrintMonitorEvent.occurred_at >= since)
            .group_by(kind_column, severity)
            .order_by(func.count().desc(), kind_column)
        )
    ]
    day = _day(PrintMonitorEvent.occurred_at)
    per_day: dict[date, dict[str, int]] = defaultdict(dict)
    for d, s, n in session.execute(
        select(day, severity, func.count())
        .where(PrintMonitorEvent.occurred_at >= since)
        .group_by(day, severity)
    ):
        per_day[d][s] = n
    return MonitoringReport(kinds, dict(per_day))


# --- the charts' data ----------------------------------------------------------------------


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp())


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def chart_data(
    days: Sequence[date],
    routing: RoutingReport,
    devices: DeviceReport,
    monitoring: MonitoringReport,
) -> dict[str, Any]:
    """The series the page's charts draw (uPlot: x first, then one list per series,
    None where a day has no value), one entry per day of the window."""
    by_day: dict[date, list[RoutingDay]] = defaultdict(list)
    for row in routing.daily:
        by_day[row.day].append(row)
    local_share, cache_rate, requests = [], [], []
    p95: dict[str, list[float | None]] = {t.value: [] for t in Tier}
    p50: dict[str, list[float | None]] = {t.value: [] for t in Tier}
    for day in days:
        rows = by_day.get(day, [])
        total = sum(r.requests for r in rows)
        requests.append(total)
        local_share.append(_rate(sum(r.requests for r in rows if r.tier is Tier.LOCAL), total))
        hits = sum(r.cache_hits for r in rows)
        cache_rate.append(_rate(hits, hits + sum(r.cache_misses for r in rows)))
        for tier in Tier:
            found = next((r for r in rows if r.tier is tier), None)
            p95[tier.value].append(
                round(found.p95_ms, 1) if found and found.p95_ms is not None else None
            )
            p50[tier.value].append(
                round(found.p50_ms, 1) if found and found.p50_ms is not None else None
            )
    shown_tiers = [t.value for t in Tier if any(v is not None for v in p95[t.value])]
    commands = {c.day: c for c in devices.commands}
    return {
        "days": [_epoch(d) for d in days],
        "routing": {
            "requests": requests,
            "localShare": local_share,
            "cacheHitRate": cache_rate,
            "tiers": shown_tiers,
            "p50": {t: p50[t] for t in shown_tiers},
            "p95": {t: p95[t] for t in shown_tiers},
        },
        "spend": {
            "total": [float(routing.spend_on(d)) for d in days],
            "topPerson": [float(routing.top_person_spend.get(d, Decimal(0))) for d in days],
            "budget": float(routing.daily_budget),
        },
        "commands": {
            "acked": [commands[d].acked if d in commands else 0 for d in days],
            "failed": [commands[d].failed if d in commands else 0 for d in days],
            "open": [commands[d].open if d in commands else 0 for d in days],
        },
        "alerts": {
            "failure": [monitoring.per_day.get(d, {}).get("failure", 0) for d in days],
            "warning": [monitoring.per_day.get(d, {}).get("warning", 0) for d in days],
        },
    }
