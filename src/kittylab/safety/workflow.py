"""The safety workflow: hazardous commands wait for signed approvals.

1. ``hold``: a hazardous command is recorded ``pending`` together with its SafetyEvent
   (``pending``, with an expiry and the requirements the policy set), before anything is
   sent. The required approvers are notified.
2. ``approve``: each approval is checked (state, expiry, who, role, PPE, presence, lockout,
   then nonce, signed payload, key and signature) and recorded with its single-use nonce.
   When the last requirement holds the event becomes ``approved``; the command is then
   dispatched by the usual dispatch job, whose claim sends it exactly once.
3. ``deny`` and ``expire_due`` decide the event ``denied`` and fail the command.

What follows a decision is registered on the unit of work and runs once it commits: the
approved command's dispatch job, the initiator's notification, the event published on
``kitty/safety/<eventId>`` (``announce``). A refused approval is committed before it is
raised (``Conflict`` or ``PermissionDenied``), so the audit entry recording the attempt
stays whatever the caller does with the error. Every act is appended to the audit chain,
last in its transaction (``records.audit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    AccessPolicy,
    Device,
    DeviceCommand,
    DeviceLock,
    Notification,
    SafetyApproval,
    SafetyEvent,
    User,
    Zone,
)
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import NotifySettings
from kittylab.devices import commands
from kittylab.domain import topics
from kittylab.domain.enums import CommandStatus, SafetyEventType, SafetyStatus
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, SignatureRejected
from kittylab.domain.principal import Principal
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.state_machines import SAFETY_TRANSITIONS, transition
from kittylab.people import presence
from kittylab.people.passkeys import RelyingParty
from kittylab.ports import JobQueue, MessageBus
from kittylab.records import alerts, audit
from kittylab.safety import event_details, keys, locks, passkey_approvals, policy, signatures
from kittylab.safety.approval_payload import (
    NONCE_PATTERN,
    ApprovalPayload,
    arguments_digest,
    mismatch,
)
from kittylab.safety.event_details import EventDetails
from kittylab.safety.lockout import lock_refusal
from kittylab.safety.ports import HeldChange
from kittylab.safety.zone_facts import ZoneFacts, zone_facts


@dataclass(frozen=True)
class SafetyContext:
    """Settings the workflow needs, from ``Settings`` at the composition root."""

    event_ttl: timedelta
    presence_ttl: timedelta
    notify: NotifySettings
    relying_party: RelyingParty | None = None
    """Whose passkeys sign approvals (issue 17, ``passkey_approvals``); none: refused."""


# -- evaluating and holding ----------------------------------------------------------------


def policy_facts(session: Session, zone_id: UUID) -> list[policy.PolicyFact]:
    rows = session.scalars(
        select(AccessPolicy).where(
            AccessPolicy.zone_id == zone_id, AccessPolicy.retired_at.is_(None)
        )
    )
    return [
        policy.PolicyFact(
            id=p.id,
            name=p.name,
            intents=frozenset(p.intents),
            required_roles=frozenset(p.required_roles),
            requires_dual_confirm=p.requires_dual_confirm,
            requires_presence=p.requires_presence,
            ppe=tuple(str(i) for i in (p.pqe_checks or {}).get("required", [])),
            presence_of=policy.PresenceOf(p.presence_of),
        )
        for p in rows
    ]


def _request(
    device: Device, zone: Zone | ZoneFacts, intent: str, initiator: UUID, now: datetime
) -> policy.HazardRequest:
    return policy.HazardRequest(
        intent=intent,
        device_id=device.id,
        device_name=device.display_name,
        zone_id=zone.id,
        zone_name=zone.name,
        hazard_level=zone.hazard_level,
        initiator_id=initiator,
        at=now,
        zone_requires_ppe=zone.requires_ppe,
    )


def evaluate(
    session: Session, device: Device, intent: str, initiator: UUID, now: datetime
) -> policy.Decision:
    """The policy decision for ``intent`` on ``device`` asked by ``initiator`` now."""
    # The zone and its policies may come from memory (``zone_facts``: forgotten as soon as
    # the lab changes anywhere); the locks are read every time.
    zone = zone_facts(session, device.zone_id, policy_facts)
    return policy.evaluate(
        _request(device, zone, intent, initiator, now),
        zone.policies,
        locks.active_locks(session, device.id),
    )


def record_refusal(
    session: Session, device: Device, intent: str, initiator: UUID, reason: str, now: datetime
) -> None:
    """Audit a hazardous request the policy denied outright (a lockout)."""
    audit.append(
        session,
        action="safety.refused",
        actor_id=initiator,
        now=now,
        subject_type="device",
        subject_id=device.id,
        details={"intent": intent, "reason": reason},
    )


def hold(
    session: Session,
    *,
    device: Device,
    decision: policy.NeedsApproval,
    intent: str,
    payload: dict[str, Any],
    requested_by: UUID,
    now: datetime,
    context: SafetyContext,
    correlation_id: str | None = None,
    conversation_id: UUID | None = None,
) -> DeviceCommand:
    """Record the command (``pending``) and its SafetyEvent (``pending``); nothing is sent
    until ``approve`` completes the requirements."""
    requirements = decision.requirements
    event = SafetyEvent(
        event_type=decision.event_type,
        device_id=device.id,
        zone_id=device.zone_id,
        policy_id=requirements.policy_id,
        initiated_by=requested_by,
        status=SafetyStatus.PENDING,
        expires_at=now + context.event_ttl,
        details=event_details.new_details(EventDetails(intent=intent, requirements=requirements)),
    )
    session.add(event)
    session.flush()
    command = commands.create_command(
        session,
        device=device,
        intent=intent,
        payload=payload,
        requested_by=requested_by,
        conversation_id=conversation_id,
        correlation_id=correlation_id,
        now=now,
    )
    if command.safety_event_id is not None and command.safety_event_id != event.id:
        # A retried request: the first one's event stands; this one is not needed.
        session.delete(event)
        session.flush()
        return command
    command.safety_event_id = event.id
    event_details.write(event, replace(event_details.read(event), command_id=command.id))
    session.flush()
    _notify_approvers(session, event, device, intent, requirements, context.notify)
    _audit(
        session,
        "safety.requested",
        requested_by,
        event.id,
        now,
        {
            "intent": intent,
            "device": device.external_id,
            "command_id": str(command.id),
            "requirements": requirements.to_json(),
            "expires_at": event.expires_at.isoformat() if event.expires_at else None,
        },
    )
    return command


def _notify_approvers(
    session: Session,
    event: SafetyEvent,
    device: Device,
    intent: str,
    requirements: policy.Requirements,
    settings: NotifySettings,
) -> list[Notification]:
    initiator = session.get(User, event.initiated_by)
    who = initiator.display_name if initiator else "someone"
    approvers = session.scalars(
        select(User).where(
            User.active.is_(True),
            User.roles.overlap(list(requirements.roles)),
            User.id != event.initiated_by,
        )
    ).all()
    rows: list[Notification] = []
    for approver in approvers:
        rows += alerts.notify_person(
            session,
            approver.id,
            f"Approval needed: {intent} on {device.display_name}",
            f"{who} asks for {intent} on {device.display_name}. It waits for "
            f"{requirements.approvals} approval(s) until {event.expires_at:%H:%M} UTC: "
            f"kittylab approve {event.id} --key YOUR_KEY",
            settings,
            related_safety_event_id=event.id,
            idempotency_key=f"safety:{event.id}:ask:{approver.id}",
        )
    return rows


# -- reading -------------------------------------------------------------------------------


def event_message(event: SafetyEvent, now: datetime) -> dict[str, Any]:
    """What ``kitty/safety/<eventId>`` carries on each change of the event."""
    return {
        "eventId": str(event.id),
        "type": event.event_type.value,
        "status": event.status.value,
        "intent": event_details.read(event).intent,
        "deviceId": str(event.device_id) if event.device_id else None,
        "expiresAt": event.expires_at.isoformat() if event.expires_at else None,
        "at": now.isoformat(),
    }


def announce(uow: UnitOfWork, bus: MessageBus | None, event: SafetyEvent, now: datetime) -> None:
    """Publish the event on ``kitty/safety/<eventId>`` once ``uow`` commits (nothing
    without a bus): wall terminals and approvers' clients hear of a held command and of
    its decision."""
    if bus is not None:
        uow.after_commit(bus.publish, topics.safety(event.id), event_message(event, now))


def get(session: Session, event_id: UUID, *, for_update: bool = False) -> SafetyEvent:
    event = session.get(
        SafetyEvent, event_id, with_for_update=for_update, populate_existing=for_update
    )
    if event is None:
        raise NotFound("safety event", event_id)
    return event


def requirements_of(event: SafetyEvent) -> policy.Requirements:
    stored = event_details.read(event).requirements
    if stored is None:
        # Events without recorded requirements (overrides, older rows) need the strictest.
        return policy.Requirements(
            roles=policy.DEFAULT_APPROVER_ROLES,
            approvals=2,
            presence_of=None,
            ppe=(),
            policy_id=event.policy_id,
            policy_name=None,
        )
    return stored


def _approval_facts(session: Session, event_id: UUID) -> list[policy.ApprovalFact]:
    rows = session.execute(
        select(SafetyApproval.approver_id, User.display_name)
        .join(User, User.id == SafetyApproval.approver_id)
        .where(SafetyApproval.event_id == event_id)
        .order_by(SafetyApproval.created_at)
    ).all()
    return [policy.ApprovalFact(r[0], r[1]) for r in rows]


def _zone_name(session: Session, event: SafetyEvent) -> str:
    zone = session.get(Zone, event.zone_id) if event.zone_id else None
    return zone.name if zone else "the zone"


def view(
    session: Session, event: SafetyEvent, now: datetime, presence_ttl: timedelta
) -> dict[str, Any]:
    """The event as the API shows it: the record, what it is for, who approved, and what
    is still missing (empty once decided)."""
    approvals = session.execute(
        select(SafetyApproval, User.display_name)
        .join(User, User.id == SafetyApproval.approver_id)
        .where(SafetyApproval.event_id == event.id)
        .order_by(SafetyApproval.created_at)
    ).all()
    details = event_details.read(event)
    lacking = _missing(
        session,
        event,
        details,
        [policy.ApprovalFact(a.approver_id, name) for a, name in approvals],
        now,
        presence_ttl,
    )
    command = held_command(session, event)
    device = session.get(Device, event.device_id) if event.device_id else None
    zone = session.get(Zone, event.zone_id) if event.zone_id else None
    initiator = session.get(User, event.initiated_by)
    return {
        "id": event.id,
        "event_type": event.event_type,
        "device_id": event.device_id,
        "zone_id": event.zone_id,
        "policy_id": event.policy_id,
        "initiated_by": event.initiated_by,
        "approved_by": event.approved_by,
        "evidence_key": event.evidence_key,
        "status": event.status,
        "reason": event.reason,
        "details": event.details,
        "created_at": event.created_at,
        "expires_at": event.expires_at,
        "resolved_at": event.resolved_at,
        "intent": details.intent,
        "command_id": command.id if command else None,
        # What the approver signs for, shown so they can check it (issue 13): the held
        # command's arguments and their digest, and the names behind the ids.
        "payload": command.payload if command else None,
        "payload_digest": arguments_digest(command.payload) if command else None,
        "device_external_id": device.external_id if device else None,
        "device_name": device.display_name if device else None,
        "zone_name": zone.name if zone else None,
        "initiator_name": initiator.display_name if initiator else None,
        "requirements": details.requirements.to_json() if details.requirements else None,
        "missing": lacking,
        "approvals": [
            {
                "approver_id": a.approver_id,
                "approver": name,
                "at": a.created_at,
                "ppe": a.attestations.get("ppe", []),
            }
            for a, name in approvals
        ],
    }


def missing(
    session: Session, event: SafetyEvent, now: datetime, presence_ttl: timedelta
) -> list[str]:
    """What ``event`` still needs before its command may be sent, in words (empty once
    decided, and for an event that takes no approvals)."""
    details = event_details.read(event)
    return _missing(session, event, details, _approval_facts(session, event.id), now, presence_ttl)


def _missing(
    session: Session,
    event: SafetyEvent,
    details: EventDetails,
    approvals: list[policy.ApprovalFact],
    now: datetime,
    presence_ttl: timedelta,
) -> list[str]:
    if event.status is not SafetyStatus.PENDING or not details.takes_approvals:
        return []
    return policy.missing(
        requirements_of(event),
        approvals,
        initiator_present=_initiator_present(session, event, now, presence_ttl),
        zone_name=_zone_name(session, event),
    )


def held_command(session: Session, event: SafetyEvent) -> DeviceCommand | None:
    """The command ``event`` holds, if it holds one."""
    command_id = event_details.read(event).command_id
    if command_id is None:
        return None
    return session.get(DeviceCommand, command_id)


def _initiator_present(session: Session, event: SafetyEvent, now: datetime, ttl: timedelta) -> bool:
    if event.zone_id is None:
        return False
    return presence.counts_as_present(session, event.initiated_by, event.zone_id, now, ttl)


def send_refusal(
    session: Session, event: SafetyEvent, device: Device, now: datetime, presence_ttl: timedelta
) -> str | None:
    """What changed since ``event`` was approved that stops its command now, or ``None``:
    the device was moved to another zone (the approval was for that zone's rules and
    people), or a person whose presence the policy asks for (the requester, or each
    approver) is no longer present in the zone by a source that counts there. The dispatch
    claim asks it under the device's row lock, as the last moment before the send."""
    if event.zone_id is None:
        return None
    if device.zone_id != event.zone_id:
        moved_to = session.get(Zone, device.zone_id)
        return (
            f"{device.display_name} was moved from {_zone_name(session, event)} to "
            f"{moved_to.name if moved_to else 'another zone'} since it was approved; "
            "nothing was sent, ask again"
        )
    requirements = requirements_of(event)
    if requirements.presence_of is None:
        return None
    if requirements.presence_of is policy.PresenceOf.INITIATOR:
        needed = [event.initiated_by]
    else:
        needed = [a.approver_id for a in _approval_facts(session, event.id)]
    for person in needed:
        if not presence.counts_as_present(session, person, event.zone_id, now, presence_ttl):
            user = session.get(User, person)
            name = user.display_name if user else "someone whose presence it needs"
            return (
                f"{name} is no longer present in {_zone_name(session, event)} (the policy "
                "requires presence when it is sent, by a source that counts there); "
                "nothing was sent, ask again"
            )
    return None


# -- approving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRequest:
    nonce: str
    signature: str
    signed_payload: str | None = None
    key_id: UUID | None = None
    ppe: Sequence[str] = ()
    message: bytes = b""
    """The bytes the signature must cover: set from the event, never from the caller."""


@dataclass
class ApprovalOutcome:
    event: SafetyEvent
    approved: bool = False
    """This approval completed the requirements: the command is dispatched."""
    command_id: UUID | None = None
    notifications: list[Notification] = field(default_factory=list)


REMOTE_APPROVAL = (
    "approvals are given from inside the lab's trusted networks only, whatever the key or "
    "role; this request came from outside them"
)


def approve(
    session: UnitOfWork,
    event_id: UUID,
    approver: Principal,
    request: ApprovalRequest,
    now: datetime,
    context: SafetyContext,
    *,
    jobs: JobQueue,
    bus: MessageBus | None = None,
    held_change: HeldChange | None = None,
) -> ApprovalOutcome:
    """Check and record one approval. The event row is locked for the whole check, so two
    approvals racing are decided one after the other, against each other's result.

    A refusal is recorded, committed and raised: ``Conflict`` when the event's state
    refuses it (decided, expired), ``PermissionDenied`` otherwise. Once the approval
    commits, the event is published (``announce``) and, when it completed the
    requirements, the command dispatched and the initiator's notification delivered.

    ``held_change`` handles events that hold something else than a command (a lab change):
    a change that can no longer be made denies the event (``safety.voided``, a
    ``Conflict``); the approval that completes the requirements carries it out in this
    transaction.

    The device's row is locked first, as ``locks.place`` does: the locks read below are
    the device's locks, and none can be placed until this approval commits."""
    event = _lock_device_then_event(session, event_id)
    outcome = ApprovalOutcome(event)
    refusal = _state_refusal(session, event, now, context)
    if refusal is not None:
        _refuse(session, event, refusal, approver, now, conflict=True)
    if approver.remote:
        # Whatever the key and role: an approval comes from the lab's own networks.
        _refuse(session, event, REMOTE_APPROVAL, approver, now, conflict=False)
    requirements = requirements_of(event)
    earlier = _approval_facts(session, event.id)
    zone_name = _zone_name(session, event)
    approver_present = (
        presence.counts_as_present(
            session, approver.user_id, event.zone_id, now, context.presence_ttl
        )
        if event.zone_id
        else False
    )
    refusal = policy.approval_refusal(
        requirements,
        event.initiated_by,
        policy.Approver(
            user_id=approver.user_id,
            name=_display_name(session, approver),
            roles=approver.roles,
            present=approver_present,
            ppe=frozenset(request.ppe),
        ),
        earlier,
        initiator_present=_initiator_present(session, event, now, context.presence_ttl),
        zone_name=zone_name,
    )
    if refusal is None:
        refusal = _lockout_refusal(session, event)
    key_id: UUID | None = None
    if refusal is None:
        refusal, key_id = _signature_refusal(
            session, event, approver, request, context.relying_party
        )
    if refusal is not None:
        _refuse(session, event, refusal, approver, now, conflict=False)
    # Checked once the approval would count, so a refused one changes nothing.
    void = held_change.void_reason(session, event) if held_change is not None else None
    if void is not None:
        # The change it holds is gone: the event fails with the reason, for good.
        _decide_denied(session, event, void, now, None, context.notify, action="safety.voided")
        announce(session, bus, event, now)
        session.commit()
        raise Conflict(void)
    assert key_id is not None
    session.add(
        SafetyApproval(
            event_id=event.id,
            approver_id=approver.user_id,
            key_id=key_id,
            nonce=request.nonce,
            signed_payload=_expected_payload(session, event, request.nonce).canonical().decode(),
            signature=request.signature,
            attestations={
                "ppe": sorted(set(request.ppe)),
                "approver_present": approver_present,
            },
        )
    )
    session.flush()
    approvals = [*earlier, policy.ApprovalFact(approver.user_id, approver.username)]
    still = policy.missing(
        requirements,
        approvals,
        initiator_present=_initiator_present(session, event, now, context.presence_ttl),
        zone_name=zone_name,
    )
    details: dict[str, Any] = {"approvals": len(approvals), "missing": still}
    if not still:
        event.status = transition(
            "safety event", SAFETY_TRANSITIONS, event.status, SafetyStatus.APPROVED
        )
        event.approved_by = approver.user_id
        event.signature = request.signature
        stored = event_details.write(event, replace(event_details.read(event), approved_at=now))
        outcome.approved = True
        outcome.command_id = stored.command_id
        outcome.notifications = _notify_initiator(session, event, "approved", context.notify)
        if held_change is not None:
            held_change.carry_out(session, event, approver, now)
    session.flush()
    _audit(
        session,
        "safety.approved" if outcome.approved else "safety.approval",
        approver.user_id,
        event.id,
        now,
        {**details, "nonce": request.nonce, "ppe": sorted(set(request.ppe))},
    )
    if outcome.approved and outcome.command_id is not None:
        session.after_commit(jobs.defer_dispatch, outcome.command_id)
    for row in outcome.notifications:
        session.after_commit(jobs.defer_notification, row.id)
    announce(session, bus, event, now)
    return outcome


def _lock_device_then_event(session: Session, event_id: UUID) -> SafetyEvent:
    """The event, locked, after its device's row: the order ``locks.place``, ``lock_out``
    and the dispatch claim take, so an approval and a lock being placed never deadlock
    and never interleave."""
    event = get(session, event_id)
    if event.device_id is not None:
        session.get(Device, event.device_id, with_for_update=True)
    return get(session, event_id, for_update=True)


def _display_name(session: Session, principal: Principal) -> str:
    user = session.get(User, principal.user_id)
    return user.display_name if user else principal.username


def _state_refusal(
    session: Session, event: SafetyEvent, now: datetime, context: SafetyContext
) -> str | None:
    if event.status is SafetyStatus.APPROVED:
        return "this request is already approved"
    if event.status is SafetyStatus.DENIED:
        return (
            f"this request was denied ({event.reason or 'no reason given'}); it cannot be approved"
        )
    if event.expires_at is not None and now >= event.expires_at:
        _decide_denied(
            session,
            event,
            f"expired at {event.expires_at:%Y-%m-%d %H:%M:%S} UTC without the approvals it needed",
            now,
            None,
            context.notify,
            action="safety.expired",
        )
        return f"this request expired at {event.expires_at:%H:%M:%S} UTC; ask again"
    if not event_details.read(event).takes_approvals:
        return "this event does not take approvals"
    return None


def _lockout_refusal(session: Session, event: SafetyEvent) -> str | None:
    """A lock placed after the request was made still stops it."""
    if event.device_id is None:
        return None
    intent = event_details.read(event).intent or ""
    return lock_refusal(intent, locks.active_locks(session, event.device_id))


def expected_payload(session: Session, event: SafetyEvent, nonce: str) -> ApprovalPayload:
    """The payload an approval of ``event`` with ``nonce`` signs (for the console, which
    hands it to the approver's passkey)."""
    return _expected_payload(session, event, nonce)


def _expected_payload(session: Session, event: SafetyEvent, nonce: str) -> ApprovalPayload:
    """The payload an approval of ``event`` must sign, its arguments' digest computed from
    the held command itself: the row the dispatch will send."""
    assert event.expires_at is not None
    command = held_command(session, event)
    return ApprovalPayload(
        event_id=event.id,
        intent=event_details.read(event).intent or "",
        device_id=event.device_id,
        zone_id=event.zone_id,
        initiator_id=event.initiated_by,
        nonce=nonce,
        expires_at=event.expires_at,
        command_id=command.id if command else None,
        arguments_digest=arguments_digest(command.payload) if command else None,
    )


def _signature_refusal(
    session: Session,
    event: SafetyEvent,
    approver: Principal,
    request: ApprovalRequest,
    relying_party: RelyingParty | None,
) -> tuple[str | None, UUID | None]:
    if not NONCE_PATTERN.fullmatch(request.nonce):
        return "the nonce must be 16 to 128 letters, digits, '-' or '_'", None
    used = session.scalar(
        select(SafetyApproval.event_id).where(SafetyApproval.nonce == request.nonce)
    )
    if used is not None:
        return "this nonce was already used: a signature is accepted once (replay refused)", None
    expected = _expected_payload(session, event, request.nonce)
    if request.signed_payload is not None:
        problem = mismatch(expected, request.signed_payload.encode())
        if problem is not None:
            return problem, None
    request = replace(request, message=expected.canonical())
    try:
        if passkey_approvals.is_webauthn(request.signature):
            key = passkey_approvals.verify_approval(
                session, approver.user_id, request.message, request.signature, relying_party
            )
        else:
            key = _signing_key(session, approver, request)
    except SignatureRejected as rejected:
        return rejected.reason, None
    return None, key


def _signing_key(session: Session, approver: Principal, request: ApprovalRequest) -> UUID:
    """The approver's registered, unrevoked key that made ``request.signature`` over the
    event's payload (verified); ``SignatureRejected`` names what is wrong otherwise."""
    if request.key_id is None:
        found = keys.verify_approval_signature(
            session, approver.user_id, request.message, request.signature
        )
    else:
        found = keys.active_key_for(session, approver.user_id, request.key_id)
        signatures.verify(found.key, request.message, request.signature)
    return found.id


def _refuse(
    uow: UnitOfWork,
    event: SafetyEvent,
    refusal: str,
    approver: Principal,
    now: datetime,
    *,
    conflict: bool,
) -> NoReturn:
    """Record the refused attempt, commit it (raising rolls the request back, and the
    attempt must stay on the record) and raise the refusal."""
    _audit(uow, "safety.approval_refused", approver.user_id, event.id, now, {"reason": refusal})
    uow.commit()
    if conflict:
        raise Conflict(refusal)
    raise PermissionDenied(refusal)


# -- denying and expiring ------------------------------------------------------------------


def deny(
    session: UnitOfWork,
    event_id: UUID,
    *,
    by: UUID,
    reason: str,
    now: datetime,
    context: SafetyContext,
    bus: MessageBus | None = None,
) -> SafetyEvent:
    """Refuse a pending request (no signature needed: refusing is always safe). Its
    command fails; the initiator is told. A decided event is a 409. The decision is
    published on ``kitty/safety/<eventId>`` once it commits."""
    event = _lock_device_then_event(session, event_id)
    _decide_denied(session, event, sanitize_text(reason, 2000), now, by, context.notify)
    announce(session, bus, event, now)
    return event


def _decide_denied(
    session: Session,
    event: SafetyEvent,
    reason: str,
    now: datetime,
    by: UUID | None,
    notify: NotifySettings,
    *,
    action: str = "safety.denied",
) -> list[Notification]:
    """Deny ``event`` and fail its pending command; returns the initiator's notifications
    (the caller registers their delivery, or the notification sweep sends them)."""
    event.status = transition("safety event", SAFETY_TRANSITIONS, event.status, SafetyStatus.DENIED)
    event.reason = reason
    event.resolved_at = now
    details = event_details.read(event)
    details = event_details.write(event, replace(details, denied_by=by or details.denied_by))
    command_id = details.command_id
    if command_id is not None:
        command = session.get(DeviceCommand, command_id, with_for_update=True)
        if command is not None and command.status is CommandStatus.PENDING:
            commands.advance_command(
                session,
                command.id,
                CommandStatus.FAILED,
                now=now,
                reason=f"safety approval denied: {reason}; nothing was sent",
            )
    session.flush()
    told = _notify_initiator(session, event, "denied", notify)
    _audit(
        session,
        action,
        by,
        event.id,
        now,
        {"reason": reason, "command_id": str(command_id) if command_id else None},
    )
    return told


def expire_due(
    session: Session, now: datetime, notify: NotifySettings, limit: int = 200
) -> list[UUID]:
    """Deny every pending event past its expiry; returns their ids."""
    due = session.scalars(
        select(SafetyEvent)
        .where(SafetyEvent.status == SafetyStatus.PENDING, SafetyEvent.expires_at <= now)
        .order_by(SafetyEvent.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for event in due:
        assert event.expires_at is not None
        _decide_denied(
            session,
            event,
            f"expired at {event.expires_at:%Y-%m-%d %H:%M:%S} UTC without the approvals it needed",
            now,
            None,
            notify,
            action="safety.expired",
        )
    return [e.id for e in due]


def _notify_initiator(
    session: Session, event: SafetyEvent, outcome: str, settings: NotifySettings
) -> list[Notification]:
    intent = event_details.read(event).intent or event.event_type.value
    if event.event_type is SafetyEventType.POLICY_CHANGE:
        title, body = _lab_change_words(event, outcome)
    else:
        device = session.get(Device, event.device_id) if event.device_id else None
        name = device.display_name if device else "the lab"
        title = f"Request {outcome}: {intent} on {name}"
        body = (
            f"Your request {intent} on {name} was approved; it is being sent now."
            if outcome == "approved"
            else f"Your request {intent} on {name} was denied: {event.reason}. Nothing was sent."
        )
    return alerts.notify_person(
        session,
        event.initiated_by,
        title,
        body,
        settings,
        related_safety_event_id=event.id,
        idempotency_key=f"safety:{event.id}:{outcome}",
    )


def _lab_change_words(event: SafetyEvent, outcome: str) -> tuple[str, str]:
    """A held lab change's outcome for the person who sent the manifest: it is applied
    whole with the approval, or nothing of it is."""
    change = event_details.read(event).change
    digest = (change.hash or "")[:12] if change is not None else ""
    what = f"lab change {digest}" if digest else "lab change"
    if outcome == "approved":
        return (
            f"Lab change approved: {what}",
            f"Your {what} (a manifest that weakens safety) was approved by a second safety "
            "person and has been applied, whole.",
        )
    return (
        f"Lab change {outcome}: {what}",
        f"Your {what} (a manifest that weakens safety) was {outcome}: {event.reason}. "
        "Nothing of it was applied.",
    )


def _audit(
    session: Session,
    action: str,
    actor_id: UUID | None,
    event_id: UUID,
    now: datetime,
    details: dict[str, Any],
) -> None:
    """Append a safety-event entry to the audit chain; last in the transaction."""
    audit.append(
        session,
        action=action,
        actor_id=actor_id,
        now=now,
        subject_type="safety_event",
        subject_id=event_id,
        details=details,
    )


# -- placing a lock stops what has not been sent ---------------------------------------------


def lock_out(
    session: UnitOfWork,
    device_id: UUID,
    owner_id: UUID,
    reason: str,
    now: datetime,
    *,
    notify: NotifySettings,
    jobs: JobQueue | None = None,
) -> DeviceLock:
    """Place ``owner_id``'s lock (``locks.place``) and stop every command on the device
    that has not been sent and that the lock refuses (the lockout table: everything that
    adds energy), in the same transaction:

    - a command still waiting for its approval: its event is denied with the lock as the
      reason (``safety.locked_out``), its command failed; an approval is then a 409;
    - an approved-but-unsent command, or one that needed no approval: failed with the lock
      as its reason; an approved event keeps its decision as a record (``not_sent`` in its
      details) and a new request is needed.

    Each requester is notified; with ``jobs`` the notifications are delivered once the lock
    commits (else by the notification sweep). The device row ``place`` locks stays locked
    until commit, so the dispatch claim, which takes it first, either sent the command
    before the lock or sees the lock and fails it."""
    lock = locks.place(session, device_id, owner_id, reason, now)
    device = session.get(Device, device_id)
    assert device is not None  # place found it
    facts = locks.active_locks(session, device_id)
    unsent = (
        select(DeviceCommand.safety_event_id)
        .where(DeviceCommand.device_id == device_id, DeviceCommand.status == CommandStatus.PENDING)
        .scalar_subquery()
    )
    # Events before commands: the order ``expire_due`` takes, so the two never deadlock.
    held = {
        event.id: event
        for event in session.scalars(
            select(SafetyEvent)
            .where(SafetyEvent.id.in_(unsent))
            .order_by(SafetyEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    pending = session.scalars(
        select(DeviceCommand)
        .where(DeviceCommand.device_id == device_id, DeviceCommand.status == CommandStatus.PENDING)
        .order_by(DeviceCommand.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    told: list[Notification] = []
    for command in pending:
        refusal = lock_refusal(command.intent, facts)
        if refusal is None:
            continue
        event = held.get(command.safety_event_id) if command.safety_event_id else None
        if event is not None and event.status is SafetyStatus.PENDING:
            told += _decide_denied(
                session, event, refusal, now, owner_id, notify, action="safety.locked_out"
            )
            continue
        commands.advance_command(
            session,
            command.id,
            CommandStatus.FAILED,
            now=now,
            reason=f"{refusal}; nothing was sent",
        )
        if event is not None:
            event_details.write(event, replace(event_details.read(event), not_sent=refusal))
            event.resolved_at = now
        if command.requested_by is not None:
            told += alerts.notify_person(
                session,
                command.requested_by,
                f"Not sent: {command.intent} on {device.display_name} (locked out)",
                f"Your {command.intent} on {device.display_name} was not sent: {refusal}. "
                "Ask again once the locks are off.",
                notify,
                related_safety_event_id=command.safety_event_id,
                idempotency_key=f"lock-stopped:{command.id}",
            )
        audit.append(
            session,
            action="lock.command_failed",
            actor_id=owner_id,
            now=now,
            subject_type="device_command",
            subject_id=command.id,
            details={"lock_id": str(lock.id), "intent": command.intent, "reason": refusal},
        )
    if jobs is not None:
        for row in told:
            session.after_commit(jobs.defer_notification, row.id)
    return lock
