"""Typed ``details``: reading a JSONB object's values tolerantly, writing back what changed.

A fabrication job, a safety event and a CAD job each keep state in a JSONB ``details``
object. Each has one module that owns its keys (``fabrication.job_details``,
``safety.event_details``, ``cad.job_details``): a frozen dataclass with ``from_json`` and
``to_json``, ``read(row)`` and ``write(row, details)``. Those modules build on two rules
kept here:

- Reading never raises: a value of an unexpected shape (an older row, a hand-edited one)
  reads as absent (``text``, ``number``, ``timestamp`` …), so every row loads.
- Writing changes only what changed (``merged``): the stored object is copied and only the
  keys whose encoded value differs between the details read and the details written are
  set or removed. Keys the dataclass does not know, and values it reads but does not
  change, stay exactly as stored, so the JSON on disk and in the API keeps its shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

_ABSENT = object()


def merged(
    stored: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]
) -> dict[str, Any]:
    """``stored`` with the keys that differ between ``before`` (the encoding of what was
    read from it) and ``after`` (the encoding of what is written) set or removed."""
    out = dict(stored)
    for key in before.keys() | after.keys():
        if key not in after:
            out.pop(key, None)
        elif before.get(key, _ABSENT) != after[key]:
            out[key] = after[key]
    return out


def present(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without its ``None`` values: an absent value is no key at all."""
    return {k: v for k, v in values.items() if v is not None}


def text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def number(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def integer(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def timestamp(raw: Mapping[str, Any], key: str) -> datetime | None:
    """An ISO 8601 time (as ``datetime.isoformat`` writes it)."""
    value = raw.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def identifier(raw: Mapping[str, Any], key: str) -> UUID | None:
    value = raw.get(key)
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def texts(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list of strings (anything else in it is skipped); empty when absent."""
    value = raw.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = raw.get(key)
    return dict(value) if isinstance(value, dict) else None


def objects(raw: Mapping[str, Any], key: str) -> tuple[dict[str, Any], ...]:
    """A list of JSON objects (anything else in it is skipped); empty when absent."""
    value = raw.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(dict(v) for v in value if isinstance(v, dict))


def stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
