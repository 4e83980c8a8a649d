"""One router per resource family."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute


def where_equal(stmt: Select[Any], *filters: tuple[InstrumentedAttribute[Any], Any]) -> Select[Any]:
    """Add ``column = value`` for every filter whose value was given."""
    for column, value in filters:
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt
