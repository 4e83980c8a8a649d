"""Uploaded print files: whose each one is, the room a person and the lab have left, and
the removal of uploads no print job uses.

Who uploaded what is written in the key, so the artifact store's listing is the record and
no table is needed: ``uploads/<user-id>/<yyyymmdd>-<random>/<name>``. Keys from before
issue 11 (``uploads/<yyyymmdd>-<random>/<name>``) name nobody: they stay readable and
printable, count towards the lab's quota (not a person's), and are removed by retention
like any other. Print jobs refer to uploads by key only (``fabrication.jobs``).

Quotas: a person's uploads together may hold at most ``fabrication.upload_quota_person_bytes``
and everybody's at most ``fabrication.upload_quota_lab_bytes``. The upload route checks the
usage before it reads the body (``room``), as the body streams in (``check``), and again
once the file is stored (``settle``): two uploads racing each other past a quota cannot
both stay, because each sees the other when it settles (at worst both are refused).

Retention: ``remove_unused`` deletes uploads older than ``fabrication.upload_retention_days``
that no fabrication job refers to, whatever its status: neither as its ``gcode_path`` nor
anywhere in its ``details`` (``source_key``). Each removal is written to the audit log.
Removal and job creation exclude each other through one advisory lock (``hold_uploads``):
an upload is never removed between a new job's check that it exists and its commit.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.config import FabricationSettings
from kittylab.domain.errors import DomainError, PayloadTooLarge
from kittylab.fabrication.jobs import UPLOAD_PREFIX
from kittylab.records import audit
from kittylab.records.ports import ArtifactInfo, ArtifactStore

log = logging.getLogger(__name__)

REMOVED_ACTION = "upload.removed"
"""The audit action of an upload removed by retention."""
_REMOVAL_LOCK = 0x75706C6F6164  # "upload"
REMOVAL_BATCH = 100
"""Uploads checked and removed per transaction: the lock is held for one batch only."""


def new_key(owner: UUID, name: str, now: datetime) -> str:
    """The key of a new upload of ``name`` (a checked plain file name) by ``owner``."""
    return f"{UPLOAD_PREFIX}{owner}/{now:%Y%m%d}-{secrets.token_hex(6)}/{name}"


def owner_of(key: str) -> UUID | None:
    """Who uploaded the file under ``key``; None for keys that name nobody (older ones)."""
    parts = key.split("/")
    if len(parts) != 4 or f"{parts[0]}/" != UPLOAD_PREFIX:
        return None
    try:
        owner = UUID(parts[1])
    except ValueError:
        return None
    return owner if str(owner) == parts[1] else None


def latest_upload(store: ArtifactStore, owner: UUID, name: str) -> str | None:
    """The key of ``owner``'s newest upload called ``name`` (a checked plain file name),
    or None: how a print asked for by name finds the person's own file (issue 16)."""
    newest: ArtifactInfo | None = None
    for info in store.list_artifacts(f"{UPLOAD_PREFIX}{owner}/"):
        if info.key.rsplit("/", 1)[-1] != name or owner_of(info.key) != owner:
            continue
        if newest is None or (info.modified_at, info.key) > (newest.modified_at, newest.key):
            newest = info
    return newest.key if newest is not None else None


# -- quotas -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quotas:
    person_bytes: int
    lab_bytes: int

    @classmethod
    def from_settings(cls, fabrication: FabricationSettings) -> Quotas:
        return cls(fabrication.upload_quota_person_bytes, fabrication.upload_quota_lab_bytes)


@dataclass(frozen=True)
class Usage:
    """Bytes of uploads kept for one person, and for the whole lab."""

    person_bytes: int
    lab_bytes: int


QuotaName = Literal["person", "lab"]
_SETTING: dict[QuotaName, str] = {
    "person": "fabrication.upload_quota_person_bytes",
    "lab": "fabrication.upload_quota_lab_bytes",
}


class UploadQuotaExceeded(PayloadTooLarge):
    """An upload would take a person's or the lab's uploads past their quota (413)."""

    def __init__(self, quota: QuotaName, limit: int, used: int, size: int) -> None:
        whose = "your uploads" if quota == "person" else "the lab's uploads"
        DomainError.__init__(
            self,
            f"this upload ({size} bytes so far) would take {whose} past the "
            f"{'per-person' if quota == 'person' else 'lab'} upload quota of {limit} bytes "
            f"({_SETTING[quota]}): {used} bytes are in use. Uploads no print job uses are "
            "removed after the retention period.",
        )
        self.field = "body"
        self.quota: QuotaName = quota
        self.limit = limit
        self.used = used
        self.size = size


def usage(store: ArtifactStore, owner: UUID) -> Usage:
    """What ``owner``'s uploads and everybody's take now, from one listing of the store."""
    person = lab = 0
    for info in store.list_artifacts(UPLOAD_PREFIX):
        lab += info.size
        if owner_of(info.key) == owner:
            person += info.size
    return Usage(person, lab)


def room(used: Usage, quotas: Quotas) -> int:
    """How many bytes one more upload may have under both quotas (0 when none)."""
    return max(0, min(quotas.person_bytes - used.person_bytes, quotas.lab_bytes - used.lab_bytes))


def check(used: Usage, quotas: Quotas, size: int) -> None:
    """``UploadQuotaExceeded`` naming the quota an upload of ``size`` more bytes passes
    (the person's first)."""
    if used.person_bytes + size > quotas.person_bytes:
        raise UploadQuotaExceeded("person", quotas.person_bytes, used.person_bytes, size)
    if used.lab_bytes + size > quotas.lab_bytes:
        raise UploadQuotaExceeded("lab", quotas.lab_bytes, used.lab_bytes, size)


def settle(store: ArtifactStore, key: str, owner: UUID, size: int, quotas: Quotas) -> None:
    """Keep the upload of ``size`` bytes just stored under ``key`` only if both quotas
    still hold with it (another upload may have been stored meanwhile); else delete it and
    refuse it, naming the quota it passed."""
    after = usage(store, owner)
    checks: tuple[tuple[QuotaName, int, int], ...] = (
        ("person", quotas.person_bytes, after.person_bytes),
        ("lab", quotas.lab_bytes, after.lab_bytes),
    )
    for quota, limit, used in checks:
        if used > limit:
            store.delete(key)
            raise UploadQuotaExceeded(quota, limit, used - size, size)


# -- retention ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovedUpload:
    key: str
    size: int
    owner: UUID | None
    modified_at: datetime


def hold_uploads(session: Session) -> None:
    """Keep retention from removing any upload until ``session``'s transaction ends: take
    this before checking that an upload exists for a new job, and commit the job."""
    session.execute(select(func.pg_advisory_xact_lock_shared(_REMOVAL_LOCK)))


def remove_unused(
    database: Database,
    store: ArtifactStore,
    now: datetime,
    retention: timedelta,
    *,
    batch_size: int = REMOVAL_BATCH,
) -> list[RemovedUpload]:
    """Delete every upload last stored before ``now - retention`` that no fabrication job
    refers to, auditing each; return what was removed."""
    cutoff = now - retention
    old = [info for info in store.list_artifacts(UPLOAD_PREFIX) if info.modified_at < cutoff]
    removed: list[RemovedUpload] = []
    for batch in _batches(old, batch_size):
        with database.unit_of_work() as session:
            session.execute(select(func.pg_advisory_xact_lock(_REMOVAL_LOCK)))
            in_use = _keys_in_use(session, [info.key for info in batch])
            for info in batch:
                if info.key in in_use:
                    continue
                store.delete(info.key)
                gone = RemovedUpload(info.key, info.size, owner_of(info.key), info.modified_at)
                _audit(session, gone, retention, now)
                removed.append(gone)
                log.info(
                    "removed upload %s (%d bytes, unused since %s)",
                    gone.key,
                    gone.size,
                    gone.modified_at.isoformat(),
                )
    return removed


def _batches(items: list[ArtifactInfo], size: int) -> Iterable[list[ArtifactInfo]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# Any string anywhere in a job's details counts, not only ``source_key``: a reference kept
# under another name must not get its file removed.
_IN_USE = text(
    """
    SELECT j.gcode_path FROM fabrication_jobs j WHERE j.gcode_path = ANY(:keys)
    UNION
    SELECT v #>> '{}'
    FROM fabrication_jobs j, jsonb_path_query(j.details, 'strict $.**') AS v
    WHERE jsonb_typeof(v) = 'string' AND v #>> '{}' = ANY(:keys)
    """
)


def _keys_in_use(session: Session, keys: list[str]) -> set[str]:
    return set(session.scalars(_IN_USE, {"keys": keys}))


def _audit(session: Session, gone: RemovedUpload, retention: timedelta, now: datetime) -> None:
    audit.append(
        session,
        action=REMOVED_ACTION,
        actor_id=None,
        now=now,
        subject_type="user" if gone.owner is not None else None,
        subject_id=gone.owner,
        details={
            "key": gone.key,
            "size": gone.size,
            "stored_at": gone.modified_at.isoformat(),
            "retention_days": retention / timedelta(days=1),
            "reason": "no print job uses it",
        },
    )
