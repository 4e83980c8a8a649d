"""Job queue depth and the age of the oldest waiting job, read from procrastinate's tables
when metrics are scraped."""

from __future__ import annotations

import time

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from kittylab.adapters.db.engine import Database

JOB_QUEUE_DEPTH = Gauge(
    "kittylab_job_queue_depth", "Background jobs by queue and status.", ["queue", "status"]
)
OLDEST_WAITING_JOB = Gauge(
    "kittylab_job_oldest_waiting_seconds",
    "Age of the oldest background job due and waiting to run, by queue (0 when none waits).",
    ["queue"],
)

# A job waits from when it was deferred, or from when it fell due if it was scheduled for
# later (procrastinate keeps the deferral time in its events).
_OLDEST_WAITING = text(
    "SELECT j.queue_name, extract(epoch FROM now() - min(coalesce(j.scheduled_at, d.at))) "
    "FROM procrastinate_jobs j "
    "LEFT JOIN LATERAL (SELECT min(e.at) AS at FROM procrastinate_events e "
    "WHERE e.job_id = j.id AND e.type = 'deferred') d ON true "
    "WHERE j.status = 'todo' AND coalesce(j.scheduled_at, d.at) <= now() "
    "GROUP BY j.queue_name"
)

# A scrape (or a flood of them) reads the jobs table at most this often.
REFRESH_SECONDS = 10.0
_last_refresh = -REFRESH_SECONDS


def refresh_queue_depth(database: Database) -> None:
    global _last_refresh
    now = time.monotonic()
    if now - _last_refresh < REFRESH_SECONDS:
        return
    _last_refresh = now
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs "
                    "WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
                )
            ).all()
            waiting = conn.execute(_OLDEST_WAITING).all()
    except SQLAlchemyError:
        return  # a scrape must not fail because the database blinked
    JOB_QUEUE_DEPTH.clear()
    for queue, status, count in rows:
        JOB_QUEUE_DEPTH.labels(queue, status).set(count)
    for status in ("todo", "doing"):
        if not any(r[1] == status for r in rows):
            JOB_QUEUE_DEPTH.labels("default", status).set(0)
    OLDEST_WAITING_JOB.clear()
    OLDEST_WAITING_JOB.labels("default").set(0)
    for queue, age in waiting:
        OLDEST_WAITING_JOB.labels(queue).set(max(0.0, float(age or 0)))
