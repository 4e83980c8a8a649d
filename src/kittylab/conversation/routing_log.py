"""Recording routing decisions: the append-only audit of which tier answered a request,
how confident it was, what it cost and how long it took.

The request text itself is never stored, only a SHA-256 of its normalized form, so the log
can be read for cost and tier metrics (and matched against a cache) without keeping what
people typed. The table refuses UPDATE and DELETE (a trigger), so a decision is written
once, complete, here.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import RoutingDecision
from kittylab.domain.enums import Tier
from kittylab.domain.errors import Conflict, ValidationFailed
from kittylab.domain.records import validate_routing_decision
from kittylab.domain.sanitize import sanitize_text

_REASON_MAX = 2000


def normalize_input(text: str) -> str:
    """The form of a request that is hashed: Unicode NFKC, case-folded, runs of whitespace
    collapsed to one space and the ends trimmed. Requests that differ only in case,
    spacing or compatibility characters normalize to the same string."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def input_hash(text: str) -> str:
    """SHA-256 hex digest of ``normalize_input(text)``: what a decision stores in place of
    the text, and what a response cache can key on."""
    return hashlib.sha256(normalize_input(text).encode()).hexdigest()


def record_routing_decision(
    session: Session,
    *,
    conversation_id: UUID | None,
    request_id: UUID,
    input_text: str,
    selected_tier: Tier,
    confidence: float,
    confidence_factors: Mapping[str, Any],
    cost_estimate: Decimal | float | None,
    latency_ms: int,
    escalation_reason: str | None,
    performed_by: UUID | None,
    details: Mapping[str, Any] | None = None,
) -> RoutingDecision:
    """Validate and append one decision; return the flushed row.

    Raises ``ValidationFailed`` for a confidence outside 0..1 (field ``confidence``), a
    missing or negative latency, a negative cost or an empty input; a missing cost is
    stored as 0. Raises ``Conflict`` (field ``requestId``) when the request already has a
    decision: the log holds one decision per request. ``escalation_reason`` is sanitized;
    ``details`` are metrics and stored as given, so they must not carry the input text.
    ``performed_by`` is None for the system.
    """
    cost = validate_routing_decision(confidence, cost_estimate, latency_ms)
    if not normalize_input(input_text):
        raise ValidationFailed("input_text", "is required")
    _refuse_recorded_request(session, request_id)
    decision = RoutingDecision(
        conversation_id=conversation_id,
        request_id=request_id,
        input_hash=input_hash(input_text),
        selected_tier=selected_tier,
        confidence=float(confidence),
        confidence_factors=dict(confidence_factors),
        cost_estimate=cost,
        latency_ms=latency_ms,
        escalation_reason=(
            None if escalation_reason is None else sanitize_text(escalation_reason, _REASON_MAX)
        ),
        performed_by=performed_by,
        details=dict(details or {}),
    )
    session.add(decision)
    session.flush()
    return decision


def _refuse_recorded_request(session: Session, request_id: UUID) -> None:
    # Checked first for a clear error; the unique constraint on request_id is the backstop.
    taken = session.scalar(
        select(RoutingDecision.id).where(RoutingDecision.request_id == request_id)
    )
    if taken is not None:
        raise Conflict(f"request {request_id} already has a routing decision", field="requestId")
