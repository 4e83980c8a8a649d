"""Job queue depth, read from procrastinate's table when metrics are scraped."""

from __future__ import annotations

import time

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from kittylab.adapters.db.engine import Database

JOB_QUEUE_DEPTH = Gauge(
    "kittylab_job_queue_depth", "Background jobs by queue and status.", ["queue", "status"]
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
    except SQLAlchemyError:
        return  # a scrape must not fail because the database blinked
    JOB_QUEUE_DEPTH.clear()
    for queue, status, count in rows:
        JOB_QUEUE_DEPTH.labels(queue, status).set(count)
    for status in ("todo", "doing"):
        if not any(r[1] == status for r in rows):
            JOB_QUEUE_DEPTH.labels("default", status).set(0)
