"""``POST /api/query``: talk to the lab. The person is the token's; the body never names
who is asking. No unit of work is held for the turn (it may wait seconds for a model):
authentication commits in its own short transaction (``Caller``), and the
conversation service opens the transactions it needs."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import Field, field_validator

from kittylab.api.auth import Caller, container
from kittylab.api.schemas import CamelModel, CommandOut, PendingHazard, StrictInput
from kittylab.bootstrap import Container
from kittylab.conversation.query import QueryRequest, QueryResult
from kittylab.domain.enums import Tier

router = APIRouter(prefix="/api", tags=["query"])

Channel = Literal["mac", "ipad", "wall_terminal", "remote", "cli"]


class QueryInput(StrictInput):
    text: str = Field(description="What the person said or typed.")


class QueryBody(StrictInput):
    conversation_id: UUID | None = Field(
        None, description="Continue this conversation; omitted: a new one is started."
    )
    channel: Channel
    input: QueryInput
    force_tier: Tier | None = Field(
        None,
        description="Ask a specific tier (questions only; device requests stay local): "
        "local, mcp or frontier. It bypasses the answer cache.",
    )

    @field_validator("force_tier")
    @classmethod
    def _a_tier_that_answers(cls, value: Tier | None) -> Tier | None:
        if value is Tier.CACHE:
            raise ValueError("must be local, mcp or frontier (the cache is not a tier to ask)")
        return value


class Reply(CamelModel):
    text: str


class RoutingOut(CamelModel):
    decision_id: UUID
    request_id: UUID
    selected_tier: Tier
    confidence: float
    confidence_factors: dict[str, Any]
    cost_estimate: Decimal
    latency_ms: int
    escalation_reason: str | None
    outcome: str
    intent: str | None
    device: str | None
    args: dict[str, Any]
    hazardous: bool
    cache: str


class ImageOut(CamelModel):
    url: str = Field(description="Where this server serves the image.")
    device: str = Field(description="The camera's external id.")
    taken_at: datetime | None


class QueryOut(CamelModel):
    conversation_id: UUID
    replies: list[Reply]
    routing: RoutingOut
    pending_hazard: PendingHazard | None = Field(
        None,
        description="Set (with 202) when the command waits for safety approval: the same "
        "object ``POST /api/device/{id}/command`` answers with.",
    )
    command: CommandOut | None = None
    images: list[ImageOut] = Field(
        default_factory=list,
        description="Pictures the replies link (a camera's snapshot, kept as an artifact), "
        "for a client that can show them: GET the url with the same token.",
    )


@router.post(
    "/query",
    response_model=QueryOut,
    responses={202: {"model": QueryOut, "description": "An action waits for safety approval"}},
)
def query(
    body: QueryBody,
    request: Request,
    response: Response,
    caller: Caller,
    c: Annotated[Container, Depends(container)],
) -> QueryOut:
    """Understand the text, route it to a tier, act or answer; one routing decision is
    recorded per request. 202 with ``pendingHazard`` when the action needs approval."""
    result = c.query.handle(
        caller,
        QueryRequest(
            text=body.input.text,
            channel=body.channel,
            conversation_id=body.conversation_id,
            force_tier=body.force_tier,
            request_id=_request_uuid(request),
        ),
    )
    if result.pending_hazard is not None:
        response.status_code = status.HTTP_202_ACCEPTED
    return _out(result)


def _request_uuid(request: Request) -> UUID:
    """The decision's request id: the HTTP request id when the server minted it, a fresh
    one when the client sent its own. A client-chosen id could repeat, and a repeated id
    is refused only after the turn's work (a paid model call) was done — which would then
    go unrecorded and uncounted against the budget."""
    if request.headers.get("x-request-id"):
        return uuid.uuid4()
    raw = getattr(request.state, "request_id", "")
    try:
        return UUID(str(raw))
    except ValueError:
        return uuid.uuid4()


def _out(result: QueryResult) -> QueryOut:
    return QueryOut(
        conversation_id=result.conversation_id,
        replies=[Reply(text=t) for t in result.replies],
        routing=RoutingOut(
            decision_id=result.decision_id,
            request_id=result.request_id,
            selected_tier=result.tier,
            confidence=result.confidence,
            confidence_factors=result.factors,
            cost_estimate=result.cost,
            latency_ms=result.latency_ms,
            escalation_reason=result.escalation_reason,
            outcome=result.outcome,
            intent=result.intent,
            device=result.device,
            args=result.args,
            hazardous=result.hazardous,
            cache=result.cache,
        ),
        pending_hazard=(
            PendingHazard.model_validate(result.pending_hazard) if result.pending_hazard else None
        ),
        command=CommandOut.model_validate(result.command) if result.command else None,
        images=[ImageOut(url=i.url, device=i.device, taken_at=i.taken_at) for i in result.images],
    )
