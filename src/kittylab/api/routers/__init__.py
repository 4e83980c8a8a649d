"""The API's routers, one per URL prefix; ``kittylab.api.app`` includes them in one list
with their prefixes. Each module's docstring names the prefix it serves. Two
sub-collections live with their resource instead of their parent's URL: a device's locks
(``/api/devices/{id}/locks``, in ``locks.py``) and a user's approver keys
(``/api/users/{id}/keys``, in ``keys.py``).

Shared here: the small query helpers the routers use."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kittylab.domain.errors import NotFound

T = TypeVar("T")


def where_equal(stmt: Select[Any], *filters: tuple[InstrumentedAttribute[Any], Any]) -> Select[Any]:
    """Add ``column = value`` for every filter whose value was given."""
    for column, value in filters:
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt


def get_or_404(session: Session, model: type[T], key: object, name: str) -> T:
    """The record of ``model`` with primary key ``key``, or NotFound naming it ``name``."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(name, key)
    return row
