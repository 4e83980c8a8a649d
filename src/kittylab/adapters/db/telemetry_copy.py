"""Telemetry rows into PostgreSQL with ``COPY … FROM STDIN``.

``COPY`` skips the per-statement parse, plan and parameter round trip of an INSERT
executemany; it is the fastest way rows get into PostgreSQL. The rows go through the
session's own connection, so they commit or roll back with the rest of its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import TelemetryEvent
from kittylab.domain.clock import uuid7

TelemetryRow: TypeAlias = tuple[UUID, str, str, datetime]
"""(device id, topic, payload as JSON text, recorded at). The payload is passed as the
text already produced for the size check, so nothing is serialized twice."""

COPY_STATEMENT = (
    f"COPY {TelemetryEvent.__tablename__} (id, device_id, topic, payload, recorded_at) FROM STDIN"
)


def copy_telemetry(session: Session, rows: Sequence[TelemetryRow]) -> int:
    """Write ``rows`` (ids made here, uuid7 like every other primary key) and return how
    many. Values must already be storable: one bad value fails the whole ``COPY``.

    Driver errors are raised as SQLAlchemy's ``DBAPIError`` family, the same errors an
    INSERT through the session would raise, so callers map them the same way."""
    connection = session.connection().connection.driver_connection
    if not isinstance(connection, psycopg.Connection):
        raise TypeError("telemetry COPY needs the psycopg 3 driver")
    try:
        with connection.cursor() as cursor, cursor.copy(COPY_STATEMENT) as copy:
            for device_id, topic, payload, recorded_at in rows:
                copy.write_row((uuid7(), device_id, topic, payload, recorded_at))
    except psycopg.Error as exc:
        raise DBAPIError.instance(COPY_STATEMENT, None, exc, psycopg.Error) from exc
    return len(rows)
