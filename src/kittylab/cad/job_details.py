"""A CAD job's ``details``, typed: the one place they are read and written.

``read(job)`` gives a ``CadJobDetails``; ``write(job, details)`` stores one back, changing
only the keys whose value changed (``domain.json_details.merged``): keys this module does
not know stay as stored. Reading is tolerant: a value of an unexpected shape reads as
absent. The keys on disk (and in the API's ``details``) are camelCase::

    requestedPolicy, plannedProviders, compare, references    what was asked
    spec, expectedBoundingBox     the part specification (``PartSpec.to_json``), its box
    targetPrinter {deviceId, name, bedMm, bedSource}    the bed the fit is scored against
    runs, progressAt, currentProvider     the runs of the job, for recovery
    attempts [{provider, outcome, error, seconds, …}]     what each provider answered
    provider, succeededProviders, fallbacks, costUsd       the outcome
    alerts, alertWanted           the operator alerts of a failed job
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from kittylab.adapters.db.tables import CADJob
from kittylab.domain import json_details as j
from kittylab.domain.cad_spec import PartSpec


@dataclass(frozen=True)
class TargetPrinter:
    """The printer a part is meant for, and the bed its fit is scored against."""

    device_id: UUID | None
    name: str
    bed_mm: tuple[float, float, float] | None
    """None: the configured default bed (``bed_source`` says why)."""
    bed_source: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "deviceId": str(self.device_id) if self.device_id else None,
            "name": self.name,
            "bedMm": list(self.bed_mm) if self.bed_mm is not None else None,
            "bedSource": self.bed_source,
        }

    @classmethod
    def from_json(cls, raw: object) -> TargetPrinter | None:
        if not isinstance(raw, dict):
            return None
        return cls(
            device_id=j.identifier(raw, "deviceId"),
            name=j.text(raw, "name") or "",
            bed_mm=_triple(raw.get("bedMm")),
            bed_source=j.text(raw, "bedSource"),
        )


@dataclass(frozen=True)
class Attempt:
    """One provider's try at the job."""

    provider: str
    outcome: str | None = None
    """succeeded | unavailable | refused | busy | failed; None while it runs."""
    error: str | None = None
    seconds: float | None = None
    recovered: bool | None = None
    """Its artifacts were recorded by an earlier run of the job that died after."""
    retry_after: float | None = None
    """A busy provider's hint (seconds)."""
    estimate_usd: str | None = None
    cost_usd: str | None = None
    quality_score: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"

    def to_json(self) -> dict[str, Any]:
        return j.present(
            {
                "provider": self.provider,
                "outcome": self.outcome,
                "error": self.error,
                "seconds": self.seconds,
                "recovered": self.recovered,
                "retryAfter": self.retry_after,
                "estimateUsd": self.estimate_usd,
                "costUsd": self.cost_usd,
                "qualityScore": self.quality_score,
            }
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Attempt:
        recovered = raw.get("recovered")
        return cls(
            provider=j.text(raw, "provider") or "",
            outcome=j.text(raw, "outcome"),
            error=j.text(raw, "error"),
            seconds=j.number(raw, "seconds"),
            recovered=recovered if isinstance(recovered, bool) else None,
            retry_after=j.number(raw, "retryAfter"),
            estimate_usd=j.text(raw, "estimateUsd"),
            cost_usd=j.text(raw, "costUsd"),
            quality_score=j.number(raw, "qualityScore"),
        )


@dataclass(frozen=True)
class CadJobDetails:
    requested_policy: str | None = None
    """The policy asked for (``auto`` is stored as an ``online`` job with this noted)."""
    planned_providers: tuple[str, ...] = ()
    compare: bool | None = None
    references: tuple[str, ...] | None = None
    attempts: tuple[Attempt, ...] | None = None
    spec: Mapping[str, Any] | None = None
    """The part specification as stored (``PartSpec.to_json``; ``part_spec`` reads it)."""
    expected_bbox: tuple[float, float, float] | None = None
    target_printer: TargetPrinter | None = None
    runs: int | None = None
    progress_at: datetime | None = None
    current_provider: str | None = None
    provider: str | None = None
    """The first provider that succeeded."""
    succeeded_providers: tuple[str, ...] | None = None
    fallbacks: int | None = None
    cost_usd: Decimal | None = None
    alerts: tuple[UUID, ...] | None = None
    """The operator notifications queued for a failed job."""
    alert_wanted: bool | None = None

    def part_spec(self) -> PartSpec | None:
        """The specification, checked (``ValidationFailed`` when it no longer is one)."""
        return PartSpec.from_json(self.spec) if self.spec else None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CadJobDetails:
        compare, wanted = raw.get("compare"), raw.get("alertWanted")
        attempts = raw.get("attempts")
        return cls(
            requested_policy=j.text(raw, "requestedPolicy"),
            planned_providers=j.texts(raw, "plannedProviders"),
            compare=compare if isinstance(compare, bool) else None,
            references=_texts_or_none(raw, "references"),
            attempts=(
                tuple(Attempt.from_json(a) for a in j.objects(raw, "attempts"))
                if isinstance(attempts, list)
                else None
            ),
            spec=j.mapping(raw, "spec"),
            expected_bbox=_triple(raw.get("expectedBoundingBox")),
            target_printer=TargetPrinter.from_json(raw.get("targetPrinter")),
            runs=j.integer(raw, "runs"),
            progress_at=j.timestamp(raw, "progressAt"),
            current_provider=j.text(raw, "currentProvider"),
            provider=j.text(raw, "provider"),
            succeeded_providers=_texts_or_none(raw, "succeededProviders"),
            fallbacks=j.integer(raw, "fallbacks"),
            cost_usd=_decimal(raw.get("costUsd")),
            alerts=_identifiers(raw.get("alerts")),
            alert_wanted=wanted if isinstance(wanted, bool) else None,
        )

    def to_json(self) -> dict[str, Any]:
        return j.present(
            {
                "requestedPolicy": self.requested_policy,
                "plannedProviders": list(self.planned_providers),
                "compare": self.compare,
                "references": list(self.references) if self.references is not None else None,
                "attempts": (
                    [a.to_json() for a in self.attempts] if self.attempts is not None else None
                ),
                "spec": dict(self.spec) if self.spec is not None else None,
                "expectedBoundingBox": (
                    list(self.expected_bbox) if self.expected_bbox is not None else None
                ),
                "targetPrinter": self.target_printer.to_json() if self.target_printer else None,
                "runs": self.runs,
                "progressAt": j.stamp(self.progress_at),
                "currentProvider": self.current_provider,
                "provider": self.provider,
                "succeededProviders": (
                    list(self.succeeded_providers) if self.succeeded_providers is not None else None
                ),
                "fallbacks": self.fallbacks,
                "costUsd": str(self.cost_usd) if self.cost_usd is not None else None,
                "alerts": [str(a) for a in self.alerts] if self.alerts is not None else None,
                "alertWanted": self.alert_wanted,
            }
        )


def read(job: CADJob) -> CadJobDetails:
    """The job's details as stored."""
    return CadJobDetails.from_json(job.details)


def write(job: CADJob, details: CadJobDetails) -> CadJobDetails:
    """Store ``details`` on ``job`` (the keys that changed since ``read``; others stay)."""
    job.details = j.merged(job.details, read(job).to_json(), details.to_json())
    return details


def new_details(details: CadJobDetails) -> dict[str, Any]:
    """The ``details`` object of a job being created."""
    return details.to_json()


def _texts_or_none(raw: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    return j.texts(raw, key) if isinstance(raw.get(key), list) else None


def _triple(value: object) -> tuple[float, float, float] | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    return (float(value[0]), float(value[1]), float(value[2]))


def _decimal(value: object) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _identifiers(value: object) -> tuple[UUID, ...] | None:
    if not isinstance(value, list):
        return None
    found: list[UUID] = []
    for item in value:
        try:
            found.append(UUID(str(item)))
        except ValueError:
            continue
    return tuple(found)
