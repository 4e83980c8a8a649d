"""Job queue depth, read from procrastinate's table when metrics are scraped."""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from kittylab.adapters.db.engine import Database

JOB_QUEUE_DEPTH = Gauge(
    "kittylab_job_queue_depth", "Background jobs by queue and status.", ["queue", "status"]
)


def refresh_queue_depth(database: Database) -> None:
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
