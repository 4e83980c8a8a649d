"""Cursor pagination over time-ordered ids, newest first.

A cursor is the opaque, URL-safe encoding of the last id a page returned; the next page
holds the ids strictly older than it. Stable under inserts, unlike offsets."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kittylab.api.schemas import CamelModel
from kittylab.domain.errors import ValidationFailed

T = TypeVar("T", bound=BaseModel)

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
CursorParam = Annotated[
    str | None, Query(max_length=64, description="`nextCursor` of the previous page.")
]


class Page(CamelModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (ValueError, binascii.Error):
        raise ValidationFailed("cursor", "is not a cursor this API issued") from None


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[UUID],
    cursor: str | None,
    limit: int,
    to_item: Callable[[Any], T],
    *,
    byte_budget: tuple[Callable[[Any], int], int] | None = None,
) -> Page[T]:
    """One page, newest first. With ``byte_budget`` (a size function and a limit), the
    page also ends once the rows' sizes add up past the limit (always at least one row),
    so large records cannot make a single response, and the server's memory, explode."""
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    rows: Sequence[Any] = session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)).all()
    take = min(limit, len(rows))
    if byte_budget is not None:
        size_of, max_bytes = byte_budget
        used = 0
        for index, row in enumerate(rows[:take]):
            used += size_of(row)
            if used > max_bytes and index > 0:
                take = index
                break
    items = [to_item(row) for row in rows[:take]]
    next_cursor = encode_cursor(rows[take - 1].id) if len(rows) > take else None
    return Page[T](items=items, next_cursor=next_cursor)
