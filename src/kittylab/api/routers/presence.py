"""``/api/presence``: who is in which zone — the observations, the manual check-in (or
check-out), its confirmation by someone present, UniFi Access door events, and the safety
role's override.

``POST /api/presence/unifi`` carries no bearer token. UniFi Access cannot send one; the
HMAC-SHA256 ``Signature`` header over the raw body, keyed with the endpoint's secret
(``KITTYLAB_PRESENCE__UNIFI_WEBHOOK_SECRET``), *is* its authentication. The signature is
checked before the body is parsed and before a database session is opened, so a forged
or replayed delivery costs one HMAC and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy import select

from kittylab.adapters.db.tables import ZonePresence
from kittylab.api.auth import Caller, UnitOfWork, container, require
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import (
    PresenceCheckIn,
    PresenceConfirm,
    PresenceOut,
    PresenceOverride,
    PresenceOverrideOut,
    SafetyEventOut,
    UnifiWebhookResult,
)
from kittylab.bootstrap import Container
from kittylab.domain.enums import PresenceStatus, Role
from kittylab.domain.errors import PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.domain.unifi_access import parse_event
from kittylab.people import presence
from kittylab.safety import webhook_signature
from kittylab.safety.webhook_signature import SignatureRefused

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/presence", tags=["presence"])


@router.get("", response_model=Page[PresenceOut])
def list_presence(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
    user_id: Annotated[UUID | None, Query(alias="userId")] = None,
    status_: Annotated[PresenceStatus | None, Query(alias="status")] = None,
) -> Page[PresenceOut]:
    """Presence history (newest first). It says where a person was and when, so it is the
    person's own unless you hold the safety or admin role: others see only their own rows,
    and asking for someone else's is 403. Who is in a zone *now* is public:
    ``GET /api/zones/{id}/occupancy``."""
    if not caller.has_any(Role.SAFETY, Role.ADMIN):
        if user_id is not None and user_id != caller.user_id:
            raise PermissionDenied("someone else's presence history needs the safety or admin role")
        user_id = caller.user_id
    stmt = where_equal(
        select(ZonePresence),
        (ZonePresence.zone_id, zone_id),
        (ZonePresence.user_id, user_id),
        (ZonePresence.status, status_),
    )
    return paginate(uow, stmt, ZonePresence.id, cursor, limit, PresenceOut.model_validate)


@router.post("", response_model=PresenceOut, status_code=status.HTTP_201_CREATED)
def check_in(
    body: PresenceCheckIn,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ZonePresence:
    """Manual check-in (``present``) or check-out (``vacated``) of yourself; only the safety
    role may record someone else (the rule of the override route: presence is what
    hazardous approvals rest on, and an admin is not a safety officer). Audited as
    ``presence.recorded``."""
    user_id = body.user_id or caller.user_id
    if user_id != caller.user_id and not caller.has_any(Role.SAFETY):
        raise PermissionDenied("recording someone else's presence needs the safety role")
    return presence.record_manual(
        uow,
        zone_id=body.zone_id,
        user_id=user_id,
        status=body.status,
        now=c.clock(),
        actor_id=caller.user_id,
    )


@router.post("/confirm", response_model=PresenceOut, status_code=status.HTTP_201_CREATED)
def confirm(
    body: PresenceConfirm,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ZonePresence:
    """Confirm someone's check-in while you are in the zone yourself (by a source that
    counts there: a badge, a confirmed check-in, an override). Their check-in then counts
    as a ``confirmed`` observation, which high-hazard zones accept where a bare self
    check-in does not. 403 when you are not present there or confirm yourself; 409 when
    they have not checked in. Audited as ``presence.confirmed``."""
    return presence.record_confirmed(
        uow,
        zone_id=body.zone_id,
        user_id=body.user_id,
        by=caller.user_id,
        now=c.clock(),
        ttl=timedelta(seconds=c.settings.presence.ttl_seconds),
    )


async def verified_unifi_body(
    request: Request, c: Annotated[Container, Depends(container)]
) -> bytes:
    """The raw body of a delivery whose signature holds; ``SignatureRefused`` (401,
    naming the reason) otherwise. Neither the secret nor the signature is ever logged."""
    body = await request.body()
    settings = c.settings.presence
    secret = settings.unifi_webhook_secret
    try:
        webhook_signature.verify(
            secret=secret.get_secret_value().encode("utf-8") if secret else None,
            header=request.headers.get(webhook_signature.HEADER),
            body=body,
            now=c.clock().timestamp(),
            max_skew=settings.unifi_max_skew_seconds,
        )
    except SignatureRefused as exc:
        presence.UNIFI_EVENTS.labels(f"refused_{exc.reason.value}").inc()
        log.warning("UniFi webhook refused", extra={"reason": exc.reason.value})
        raise
    return body


@router.post(
    "/unifi",
    response_model=UnifiWebhookResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "A redelivery of an event already recorded."},
        202: {"description": "Verified and accepted, but it records nothing (see reason)."},
        401: {
            "description": "Signature missing, malformed, wrong or outside the time window, "
            "or no secret configured."
        },
    },
)
def unifi_webhook(
    # Declared before the unit of work: FastAPI resolves dependencies in order, so an
    # unverified delivery never opens a database session.
    body: Annotated[bytes, Depends(verified_unifi_body)],
    response: Response,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> UnifiWebhookResult:
    """A UniFi Access webhook delivery (register this URL in UniFi Access with the
    ``access.door.unlock`` event; see docs/presence.md). A granted door access by a mapped
    person at a mapped door records them present (201). Deliveries that say nothing about
    presence — other events, denied access, unknown door or person — are answered 202
    with the reason, so UniFi does not retry them; a redelivered event is answered 200 and
    not recorded twice."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise ValidationFailed("body", "is not JSON") from None
    event = parse_event(payload)
    result = presence.record_unifi(uow, event, c.clock())
    if result.outcome is presence.UnifiOutcome.DUPLICATE:
        response.status_code = status.HTTP_200_OK
    elif not result.outcome.recorded:
        response.status_code = status.HTTP_202_ACCEPTED
    return UnifiWebhookResult(
        outcome=result.outcome.value,
        recorded=result.outcome.recorded,
        reason=result.reason,
        event_id=event.event_id,
        presence_id=result.presence.id if result.presence else None,
        zone_id=result.zone_id,
        user_id=result.user_id,
    )


SafetyOnly = Annotated[Principal, Depends(require(Role.SAFETY))]


@router.post("/override", response_model=PresenceOverrideOut, status_code=201)
def override(
    body: PresenceOverride,
    caller: SafetyOnly,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> PresenceOverrideOut:
    """State someone's presence in a zone (the safety role only: presence is what hazardous
    approvals rest on, and an admin is not a safety officer): when a reader is down,
    or someone left without badging out. Records the observation (source ``override``), an
    approved ``override`` safety event naming you and the reason, and an audit entry."""
    result = presence.record_override(
        uow,
        zone_id=body.zone_id,
        user_id=body.user_id,
        status=body.status,
        reason=body.reason,
        by=caller.user_id,
        now=c.clock(),
    )
    return PresenceOverrideOut(
        presence=PresenceOut.model_validate(result.presence),
        safety_event=SafetyEventOut.model_validate(result.event),
    )
