"""A manifest sent over the API, under the two-person rule (issue 13, hole 6).

``submit`` compares the lab with the manifest (``domain.lab_review.weakening_changes``):

- nothing weakens safety: the manifest is applied at once (``apply_manifest``, audited
  entry by entry as its sender);
- something does: nothing is applied. The whole manifest is held as a ``policy_change``
  safety event (``Held``), the non-weakening parts too: a manifest is one change, and
  applying half of it would leave a lab nobody declared. A second person with the safety
  role, not the sender, approves it with a signed approval (``kittylab approve``, the
  same Ed25519 flow as a held command); the approval applies it, whole, in its own
  transaction (``HELD_LAB_CHANGES.carry_out``).

The held change is bound to ``change_hash``: the lab revision it was made against
(``lab_state.revision``), the manifest's SHA-256 and the weakening list. The hash is part
of the event's intent, ``lab_apply:<hash>``, and the intent is one of the fields every
approver signs (``ApprovalPayload``), so a signature approves this change and no other.
When the approval comes, the lab's revision is read again under the apply lock: if anything
changed (another apply, a person added, a key revoked), the change is void, the event is
denied with that reason (``safety.voided``) and the manifest must be sent again.

``submit`` is the API's use case: it registers what follows a hold on the unit of work (the
event announced on ``kitty/safety/<eventId>``, the approvers' notifications delivered), and
for a dry run rolls the transaction back so none of it happens.

The on-host command line (``kittylab lab apply``) does not come here: it holds the
database's keys anyway, and applies at once, audited (its report lists the weakening).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Notification, SafetyEvent, User
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import NotifySettings
from kittylab.domain.enums import Role, SafetyEventType, SafetyStatus
from kittylab.domain.lab_review import Weakening, change_hash, change_intent, weakening_changes
from kittylab.domain.principal import Principal
from kittylab.manifest import lab_state
from kittylab.manifest.apply import ApplyReport, apply_manifest, lock_lab
from kittylab.manifest.loader import parse_manifest
from kittylab.manifest.model import LabManifest
from kittylab.manifest.problems import ManifestError
from kittylab.ports import JobQueue, MessageBus
from kittylab.records import alerts, audit
from kittylab.safety import event_details, policy, workflow
from kittylab.safety.event_details import EventDetails, LabChange
from kittylab.safety.workflow import SafetyContext

# One safety person who is not the sender signs: the event's requirements.
REQUIREMENTS = policy.Requirements(
    roles=frozenset({Role.SAFETY}),
    approvals=1,
    presence_of=None,
    ppe=(),
    policy_id=None,
    policy_name=None,
)


@dataclass(frozen=True)
class Review:
    """What a manifest would do to the lab now, and what that weakens."""

    revision: str
    manifest_sha256: str
    weakening: list[Weakening]

    @property
    def change_hash(self) -> str:
        return change_hash(self.revision, self.manifest_sha256, self.weakening)

    def to_json(self) -> dict[str, Any]:
        return self.held().to_json()

    def held(self) -> LabChange:
        """The change as its held safety event keeps it."""
        return LabChange(
            hash=self.change_hash,
            revision=self.revision,
            manifest_sha256=self.manifest_sha256,
            weakening=tuple(w.to_json() for w in self.weakening),
        )


@dataclass(frozen=True)
class Applied:
    report: ApplyReport
    review: Review


@dataclass(frozen=True)
class Held:
    event: SafetyEvent
    report: ApplyReport
    """What the change would do, tried and rolled back."""
    review: Review
    notifications: Sequence[Notification]


def review(session: Session, manifest: LabManifest, text: str) -> Review:
    """Compare the lab with ``manifest`` (its YAML ``text``), under the apply lock: no
    other apply changes the lab until the caller's transaction ends."""
    lock_lab(session)
    records = lab_state.read(session)
    return Review(
        revision=lab_state.revision(records, manifest),
        manifest_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        weakening=weakening_changes(
            lab_state.current_facts(records), lab_state.proposed_facts(manifest)
        ),
    )


def submit(
    uow: UnitOfWork,
    manifest: LabManifest,
    text: str,
    sender: Principal,
    now: datetime,
    context: SafetyContext,
    *,
    jobs: JobQueue,
    bus: MessageBus | None = None,
    dry_run: bool = False,
) -> Applied | Held:
    """Apply ``manifest`` at once when it weakens nothing; hold it otherwise (module
    docstring). A held change registers its follow-ups on ``uow``: the event announced
    (``workflow.announce``), then each approver's notification delivered.

    With ``dry_run`` the transaction is rolled back before anything is registered: the
    answer says what would have happened, held or applied, and nothing is stored,
    announced or deferred."""
    outcome = _decide(uow, manifest, text, sender, now, context)
    if dry_run:
        uow.rollback()
        return outcome
    if isinstance(outcome, Held):
        workflow.announce(uow, bus, outcome.event, now)
        for row in outcome.notifications:
            uow.after_commit(jobs.defer_notification, row.id)
    return outcome


def _decide(
    session: Session,
    manifest: LabManifest,
    text: str,
    sender: Principal,
    now: datetime,
    context: SafetyContext,
) -> Applied | Held:
    found = review(session, manifest, text)
    if not found.weakening:
        return Applied(apply_manifest(session, manifest, now, actor_id=sender.user_id), found)
    trial = session.begin_nested()
    try:  # validates the manifest against the lab and counts what it would change
        report = apply_manifest(session, manifest, now, actor_id=sender.user_id)
    finally:
        trial.rollback()
    return _hold(session, manifest, text, found, report, sender, now, context)


def _hold(
    session: Session,
    manifest: LabManifest,
    text: str,
    found: Review,
    report: ApplyReport,
    sender: Principal,
    now: datetime,
    context: SafetyContext,
) -> Held:
    policies = _policies_changed(session, manifest)
    event = SafetyEvent(
        event_type=SafetyEventType.POLICY_CHANGE,
        policy_id=policies[0].id if policies else None,
        initiated_by=sender.user_id,
        status=SafetyStatus.PENDING,
        expires_at=now + context.event_ttl,
        details=event_details.new_details(
            EventDetails(
                intent=change_intent(found.change_hash),
                requirements=REQUIREMENTS,
                change=found.held(),
                policies=tuple(p.name for p in policies),
                tallies={kind: vars(t) for kind, t in report.tallies().items()},
                # Every change the apply would make, field by field: what the desk shows
                # its approver (the change is void if the lab moves, so this stays true).
                changes=tuple(change.to_json() for change in report.changes),
                manifest=text,
            )
        ),
    )
    session.add(event)
    session.flush()
    told = _notify_safety(session, event, sender, found.weakening, context.notify)
    audit.append(
        session,
        action="safety.requested",
        actor_id=sender.user_id,
        now=now,
        subject_type="safety_event",
        subject_id=event.id,
        details={
            "intent": change_intent(found.change_hash),
            "change": found.to_json(),
            "requirements": REQUIREMENTS.to_json(),
            "expires_at": event.expires_at.isoformat() if event.expires_at else None,
        },
    )
    return Held(event, report, found, told)


def _policies_changed(session: Session, manifest: LabManifest) -> list[AccessPolicy]:
    """The active policies the manifest changes or drops: the held event is linked to them
    (the data model's "linked to AccessPolicy"); an apply then retires a dropped one
    instead of deleting it, so the link holds."""
    declared = {p.name: p for p in manifest.policies}
    changed: list[AccessPolicy] = []
    rows = session.scalars(
        select(AccessPolicy).where(AccessPolicy.retired_at.is_(None)).order_by(AccessPolicy.name)
    )
    for row in rows:
        spec = declared.get(row.name)
        if spec is None or (
            list(spec.intents),
            list(spec.required_roles),
            spec.requires_dual_confirm,
            spec.requires_presence,
            spec.presence_of,
            spec.pqe_checks,
        ) != (
            list(row.intents),
            list(row.required_roles),
            row.requires_dual_confirm,
            row.requires_presence,
            row.presence_of,
            row.pqe_checks,
        ):
            changed.append(row)
    return changed


def _notify_safety(
    session: Session,
    event: SafetyEvent,
    sender: Principal,
    weakening: Sequence[Weakening],
    settings: NotifySettings,
) -> list[Notification]:
    approvers = session.scalars(
        select(User).where(
            User.active.is_(True), User.roles.overlap([Role.SAFETY]), User.id != sender.user_id
        )
    ).all()
    listed = "; ".join(w.change for w in weakening[:5])
    more = f" and {len(weakening) - 5} more" if len(weakening) > 5 else ""
    rows: list[Notification] = []
    for approver in approvers:
        rows += alerts.notify_person(
            session,
            approver.id,
            "Approval needed: a lab change that weakens safety",
            f"{sender.username} sent a lab manifest that weakens safety: {listed}{more}. "
            f"Nothing is applied until a second safety person approves it before "
            f"{event.expires_at:%H:%M} UTC: kittylab approve {event.id} --key YOUR_KEY",
            settings,
            related_safety_event_id=event.id,
            idempotency_key=f"safety:{event.id}:ask:{approver.id}",
        )
    return rows


class HeldLabChanges:
    """The approval's side of a held lab change (``safety.ports.HeldChange``)."""

    def void_reason(self, session: Session, event: SafetyEvent) -> str | None:
        if event.event_type is not SafetyEventType.POLICY_CHANGE:
            return None
        details = event_details.read(event)
        stored, text = details.change, details.manifest
        if stored is None or text is None:
            return "void: this lab change was not stored whole; send the manifest again"
        try:
            now = review(session, parse_manifest(text, "manifest"), text)
        except ManifestError as exc:  # the rules moved under it (an upgrade)
            return f"void: the held manifest no longer validates ({exc.message}); send it again"
        if now.revision != stored.revision:
            return (
                "void: the lab changed after this change was sent (it was made against "
                f"revision {str(stored.revision)[:12]}, the lab is now at "
                f"{now.revision[:12]}); nothing was applied; send the manifest again"
            )
        if change_intent(now.change_hash) != details.intent:
            return "void: the held change does not match the hash it was approved under"
        return None

    def carry_out(
        self, session: Session, event: SafetyEvent, approver: Principal, now: datetime
    ) -> None:
        if event.event_type is not SafetyEventType.POLICY_CHANGE:
            return
        details = event_details.read(event)
        manifest = parse_manifest(str(details.manifest), "manifest")
        report = apply_manifest(
            session,
            manifest,
            now,
            actor_id=event.initiated_by,
            audit_context={"safety_event_id": str(event.id), "approved_by": approver.username},
        )
        event.resolved_at = now
        applied = {kind: vars(t) for kind, t in report.tallies().items()}
        event_details.write(event, replace(details, applied=applied))


HELD_LAB_CHANGES = HeldLabChanges()
