"""``/healthz``, ``/readyz``, ``/metrics``: liveness, readiness and metrics, the only routes
without authentication."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from kittylab.adapters.db import migrate
from kittylab.adapters.db.lab_metrics import refresh_lab_metrics
from kittylab.adapters.jobs.metrics import refresh_queue_depth
from kittylab.api.auth import container
from kittylab.api.schemas import Health
from kittylab.bootstrap import Container

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(response: Response, c: Annotated[Container, Depends(container)]) -> Health:
    """Ready when the database answers, its schema is at the newest migration and (in a
    server that runs them) the background workers are running."""
    checks: dict[str, str] = {}
    try:
        with c.database.engine.connect() as conn:
            current = migrate.current_revision(conn)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == migrate.head_revision() else "pending"
    except SQLAlchemyError as exc:
        log.warning("readiness check failed", extra={"error": type(exc).__name__})
        checks["database"] = "unreachable"
    if c.worker_state is not None:
        checks["workers"] = "ok" if c.worker_state.running else "restarting"
    ready = all(v == "ok" for v in checks.values()) and "migrations" in checks
    if not ready:
        response.status_code = 503
    return Health(status="ready" if ready else "not ready", checks=checks)


@router.get("/metrics", response_class=Response)
def metrics(c: Annotated[Container, Depends(container)]) -> Response:
    """Prometheus metrics, all prefixed ``kittylab_`` (listed in docs/operations.md)."""
    refresh_queue_depth(c.database)
    refresh_lab_metrics(c.database, c.settings.query.daily_budget_usd, c.clock)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
