"""CAD jobs and their artifacts on the write path.

A job moves ``queued → running → completed|failed``; reaching either end stamps
``completed_at``. Artifacts carry the metadata the data model requires (bounding box,
material hints, generation parameters) and a quality score in 0..1, under a unique
storage key. The prompt is stored as given, because generation needs it, but it reaches
the logs only through ``sanitize_text``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import CADArtifact, CADJob, ConversationSession
from kittylab.domain.enums import ArtifactType, CADJobStatus, CADPolicyMode, CADProvider
from kittylab.domain.errors import Conflict, NotFound, ValidationFailed
from kittylab.domain.records import validate_artifact_metadata, validate_confidence
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.state_machines import CAD_JOB_TRANSITIONS, is_final, transition

logger = logging.getLogger(__name__)

_ARTIFACT_KEY_MAX = 512  # the column's length
_ERROR_MAX = 2000


def create_cad_job(
    session: Session,
    *,
    prompt: str,
    policy_mode: CADPolicyMode,
    requested_by: UUID | None,
    conversation_id: UUID | None = None,
    parent_job_id: UUID | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime,
) -> CADJob:
    """Record a ``queued`` job and return it, flushed.

    Raises ``ValidationFailed`` (field ``prompt``) for a blank prompt and ``NotFound`` for
    an unknown conversation or parent job. ``parent_job_id`` names the job a refinement
    starts from. The log line shows the prompt sanitized, never raw.
    """
    if not prompt.strip():
        raise ValidationFailed("prompt", "is required")
    if conversation_id is not None and session.get(ConversationSession, conversation_id) is None:
        raise NotFound("conversation", conversation_id)
    if parent_job_id is not None and session.get(CADJob, parent_job_id) is None:
        raise NotFound("CAD job", parent_job_id)
    job = CADJob(
        prompt=prompt,
        policy_mode=policy_mode,
        status=CADJobStatus.QUEUED,
        requested_by=requested_by,
        conversation_id=conversation_id,
        parent_job_id=parent_job_id,
        details=dict(details or {}),
        created_at=now,
    )
    session.add(job)
    session.flush()
    logger.info("queued CAD job %s (%s): %s", job.id, policy_mode.value, sanitize_text(prompt))
    return job


def advance_cad_job(
    session: Session,
    job_id: UUID,
    target: CADJobStatus,
    *,
    now: datetime,
    error: str | None = None,
) -> CADJob:
    """Move a job to ``target`` under a row lock and return it.

    Raises ``NotFound`` for an unknown id and ``InvalidTransition`` for a move the table
    forbids (``queued → completed`` among them). A final state stamps ``completed_at``;
    ``failed`` stores ``error``, sanitized.
    """
    job = session.get(CADJob, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise NotFound("CAD job", job_id)
    previous = job.status
    job.status = transition("CAD job", CAD_JOB_TRANSITIONS, previous, target)
    if is_final(CAD_JOB_TRANSITIONS, target):
        job.completed_at = now
    if target is CADJobStatus.FAILED and error is not None:
        job.error = sanitize_text(error, _ERROR_MAX)
    session.flush()
    logger.info("CAD job %s: %s -> %s", job.id, previous.value, target.value)
    return job


def add_cad_artifact(
    session: Session,
    *,
    cad_job_id: UUID,
    provider: CADProvider,
    artifact_key: str,
    artifact_type: ArtifactType,
    metadata: Mapping[str, Any],
    quality_score: float,
) -> CADArtifact:
    """Record one artifact of a job and return it, flushed.

    Raises ``NotFound`` for an unknown job; ``ValidationFailed`` for metadata without a
    bounding box, material hints or generation parameters (field ``metadata.<key>``), a
    quality score outside 0..1 (``quality_score``) or a blank or over-long key
    (``artifact_key``); ``Conflict`` (field ``artifactKey``) when the key is taken.
    """
    if session.get(CADJob, cad_job_id) is None:
        raise NotFound("CAD job", cad_job_id)
    key = _clean_artifact_key(artifact_key)
    validate_artifact_metadata(metadata)
    score = validate_confidence(quality_score, "quality_score")
    # Checked first for a clear error; the unique constraint is the backstop.
    taken = session.scalar(select(CADArtifact.id).where(CADArtifact.artifact_key == key))
    if taken is not None:
        raise Conflict(f"an artifact is already stored at {key}", field="artifactKey")
    artifact = CADArtifact(
        cad_job_id=cad_job_id,
        provider=provider,
        artifact_key=key,
        artifact_type=artifact_type,
        metadata_=dict(metadata),
        quality_score=score,
    )
    session.add(artifact)
    session.flush()
    return artifact


def check_artifact_key_free(session: Session, artifact_key: str) -> None:
    """``Conflict`` (field ``artifactKey``) when an artifact is recorded under the key;
    callers check before writing the file, so a recorded file is never replaced."""
    key = _clean_artifact_key(artifact_key)
    if session.scalar(select(CADArtifact.id).where(CADArtifact.artifact_key == key)) is not None:
        raise Conflict(f"an artifact is already stored at {key}", field="artifactKey")


def _clean_artifact_key(value: str) -> str:
    key = value.strip()
    if not key or len(key) > _ARTIFACT_KEY_MAX:
        raise ValidationFailed("artifact_key", f"must be 1-{_ARTIFACT_KEY_MAX} characters")
    return key
