"""Make the database match a lab manifest.

Contract of ``apply_manifest``:

- Records are matched by identity, never recreated: zones by name, devices by
  (integration, external_id), users by username, policies by name, a user's keys by key
  material (type and data; the comment may change).
- Nothing with history is deleted. A device missing from the manifest is retired
  (``retired_at`` set) and un-retired if it comes back; a missing user is deactivated and
  reactivated likewise (see below); a key missing from a user's ``keys`` is revoked.
- Revocation is final: a revoked key listed again stays revoked and the report warns, since
  it may have been revoked by hand because it leaked.
- A policy missing from the manifest is deleted, or, when safety events already cite it,
  retired (``retired_at`` set, so it governs nothing) and kept so the audit trail resolves.
- A person missing from the manifest is deactivated only if the manifest created them;
  people added through the API or CLI are left alone.
  A zone missing from the manifest is deleted when nothing refers to it; otherwise it is
  kept and the report warns.
- Runtime state is never written: ``online_state`` and ``last_seen`` of a device belong to
  its adapter. Connection settings are stored as written, ``${ENV_VAR}`` and all.
- Idempotent: a value is only assigned when it differs, so applying the same manifest
  again issues no UPDATE and reports every record unchanged.
- A user's ``unifi_id`` is stored as ``User.unifi_user_id``; ids may move between declared
  people in one apply. A person the manifest deactivates loses theirs (a deactivated
  person's badge must not check anyone in). An id held by someone outside the manifest is
  a ``ManifestError`` naming ``users[i].unifi_id``.
- Every change is audited, entry by entry, after every other write (issue 13): zones
  (``zone.added``, ``zone.changed``, ``zone.removed``), devices (``device.added``,
  ``device.changed``, ``device.retired``), people (``user.added``, ``user.changed``,
  ``user.deactivated``), keys (``key.added``, ``key.revoked``) and policies
  (``policy.changed``: created, updated, retired or deleted). A change names each field
  it changed with its value before and after (``fields``), zones by name and a device's
  capabilities by their intents. ``details.source`` is ``"manifest"``, plus whatever
  ``audit_context`` the caller gives (the safety event a held change was approved in);
  ``actor_id`` is who applied it (``None`` from the command line). An apply that changes
  nothing writes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, SafetyEvent, User, UserKey, Zone
from kittylab.manifest.model import LabManifest, key_material
from kittylab.manifest.problems import ManifestError, ManifestProblem
from kittylab.records import audit

# Concurrent applies would race to create the same rows; a transaction-scoped advisory
# lock makes the second wait for the first. The number is arbitrary but fixed.
_APPLY_LOCK = 0x4B4C_4D41_4E49


@dataclass
class Tally:
    """What an apply did to one kind of record."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.retired} retired"
        )


@dataclass(frozen=True)
class Change:
    """One change an apply made, as its audit entry names it: the action (``zone.changed``)
    and the details (the record's name; each changed field with its value before and
    after, ``{"from": …, "to": …}``, or ``{"changed": true}`` where the value is not shown)."""

    action: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "details": self.details}


@dataclass
class ApplyReport:
    """Counts per kind of record, the changes one by one, and warnings about things an
    apply chose not to do.

    ``retired`` means: devices retired, users deactivated, keys revoked, policies and zones
    removed (or, for a policy with history, marked retired)."""

    zones: Tally = field(default_factory=Tally)
    devices: Tally = field(default_factory=Tally)
    users: Tally = field(default_factory=Tally)
    keys: Tally = field(default_factory=Tally)
    policies: Tally = field(default_factory=Tally)
    warnings: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    """In the order they are audited (what a held change shows its approver)."""

    def tallies(self) -> dict[str, Tally]:
        return {
            "zones": self.zones,
            "devices": self.devices,
            "users": self.users,
            "keys": self.keys,
            "policies": self.policies,
        }

    @property
    def changed(self) -> bool:
        return any(t.created or t.updated or t.retired for t in self.tallies().values())

    def __str__(self) -> str:
        lines = [f"{kind}: {tally}" for kind, tally in self.tallies().items()]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def lock_lab(session: Session) -> None:
    """Take the apply lock until the transaction ends: no other apply changes the lab
    meanwhile (a held change checks the lab's revision under it, then applies)."""
    session.execute(select(func.pg_advisory_xact_lock(_APPLY_LOCK)))


def apply_manifest(
    session: Session,
    manifest: LabManifest,
    now: datetime,
    actor_id: UUID | None = None,
    audit_context: Mapping[str, Any] | None = None,
) -> ApplyReport:
    """Bring the records in ``session`` in line with ``manifest`` (see the module
    docstring) and report what changed. ``now`` (timezone-aware) stamps retirements and
    revocations. The caller owns the transaction: nothing is committed here."""
    lock_lab(session)
    report = ApplyReport()
    trail: list[_Audited] = []
    zones = _apply_zones(session, manifest, report.zones, trail)
    session.flush()
    _apply_devices(session, manifest, zones, now, report.devices, trail)
    users = _apply_users(session, manifest, report.users, trail)
    session.flush()
    # Keys declared in a manifest sent over the API follow the API's rule (issue 13): they
    # sign nothing until a second person with the safety role confirms them.
    _apply_keys(session, manifest, users, now, report, trail, awaiting=actor_id is not None)
    _apply_policies(session, manifest, zones, now, report, trail)
    session.flush()
    _remove_undeclared_zones(session, manifest, zones, report, trail)
    session.flush()
    # Last: the audit chain's lock is held until commit, so it is taken as late as possible.
    for entry in trail:
        report.changes.append(Change(entry.action, entry.details))
        audit.append(
            session,
            action=entry.action,
            actor_id=actor_id,
            now=now,
            subject_type=entry.subject_type,
            subject_id=entry.row.id,
            details={"source": "manifest", **(audit_context or {}), **entry.details},
        )
    return report


@dataclass(frozen=True)
class _Audited:
    """A change to audit once the writes are done (ids are assigned by then)."""

    action: str
    subject_type: str
    row: Zone | Device | User | UserKey | AccessPolicy
    details: dict[str, Any]


def _assign(row: object, values: dict[str, Any]) -> list[str]:
    """Assign each value that differs from the row's; the names of those that did."""
    changed: list[str] = []
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed


def _sync(row: object, values: dict[str, Any]) -> bool:
    """Assign each value that differs from the row's; True when any did."""
    return bool(_assign(row, values))


def _assign_audited(row: object, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Assign each value that differs; each changed field with its value before and after,
    as the audit log shows them."""
    before = {name: _plain(getattr(row, name)) for name in values}
    return {
        name: {"from": before[name], "to": _plain(values[name])} for name in _assign(row, values)
    }


def _count(tally: Tally, *, changed: bool) -> None:
    """Count an existing record as updated or unchanged."""
    if changed:
        tally.updated += 1
    else:
        tally.unchanged += 1


def _apply_zones(
    session: Session, manifest: LabManifest, tally: Tally, trail: list[_Audited]
) -> dict[str, Zone]:
    """Upsert declared zones; returns every zone row by name, declared or not."""
    rows = {z.name: z for z in session.scalars(select(Zone))}
    for spec in manifest.zones:
        values = {
            "hazard_level": spec.hazard_level,
            "requires_ppe": spec.requires_ppe,
            "unifi_door_ids": list(spec.unifi_door_ids),
            "presence_sources": (
                [s.value for s in spec.presence_sources]
                if spec.presence_sources is not None
                else None
            ),
        }
        row = rows.get(spec.name)
        if row is None:
            row = rows[spec.name] = Zone(name=spec.name, **values)
            session.add(row)
            tally.created += 1
            trail.append(_Audited("zone.added", "zone", row, {"name": spec.name, **_plain(values)}))
        else:
            fields = _assign_audited(row, values)
            _count(tally, changed=bool(fields))
            if fields:
                trail.append(
                    _Audited("zone.changed", "zone", row, {"name": spec.name, "fields": fields})
                )
    return rows


def _apply_devices(
    session: Session,
    manifest: LabManifest,
    zones: dict[str, Zone],
    now: datetime,
    tally: Tally,
    trail: list[_Audited],
) -> None:
    rows = {(d.integration, d.external_id): d for d in session.scalars(select(Device))}
    zone_names = {zone.id: name for name, zone in zones.items()}
    for spec in manifest.devices:
        values = {
            "display_name": spec.display_name,
            "kind": spec.kind,
            "zone_id": zones[spec.zone].id,
            "capabilities": copy.deepcopy(spec.capabilities),
            "aliases": list(spec.aliases),
            "connection": copy.deepcopy(spec.connection),
            "attributes": copy.deepcopy(spec.attributes),
            "retired_at": None,
        }
        row = rows.get(spec.key)
        named = {"external_id": spec.external_id, "integration": spec.integration}
        if row is None:
            added = Device(integration=spec.integration, external_id=spec.external_id, **values)
            session.add(added)
            tally.created += 1
            facts = {
                "kind": spec.kind.value,
                "zone": spec.zone,
                "intents": sorted(spec.capabilities),
            }
            trail.append(_Audited("device.added", "device", added, {**named, **facts}))
        else:
            was = {"zone": zone_names.get(row.zone_id), "intents": sorted(row.capabilities)}
            fields = _assign_audited(row, values)
            _count(tally, changed=bool(fields))
            if fields:
                trail.append(
                    _Audited(
                        "device.changed",
                        "device",
                        row,
                        {**named, "fields": _device_fields(fields, was, spec.zone)},
                    )
                )
    declared = {spec.key for spec in manifest.devices}
    for key, row in rows.items():
        if key not in declared and row.retired_at is None:
            row.retired_at = now
            tally.retired += 1
            retired = {"external_id": row.external_id, "integration": row.integration}
            trail.append(_Audited("device.retired", "device", row, retired))


def _device_fields(
    fields: dict[str, dict[str, Any]], was: dict[str, Any], zone: str
) -> dict[str, dict[str, Any]]:
    """A device's changed fields as people read them: its zone by name, its capabilities
    by the intents they allow (the payload schemas are long, and alike)."""
    shown = dict(fields)
    if "zone_id" in shown:
        del shown["zone_id"]
        shown["zone"] = {"from": was["zone"], "to": zone}
    if "capabilities" in shown:
        new = sorted(shown.pop("capabilities")["to"])
        shown["intents" if new != was["intents"] else "payload_schemas"] = (
            {"from": was["intents"], "to": new} if new != was["intents"] else {"changed": True}
        )
    return shown


def _apply_users(
    session: Session, manifest: LabManifest, tally: Tally, trail: list[_Audited]
) -> dict[str, User]:
    rows = {u.username: u for u in session.scalars(select(User))}
    _release_unifi_ids(session, manifest, rows)
    for spec in manifest.users:
        values = {
            "display_name": spec.display_name,
            "email": spec.email,
            "roles": list(spec.roles),
            "tailscale_id": spec.tailscale_id,
            "unifi_user_id": spec.unifi_id,
            "active": True,
            "managed_by_manifest": True,
        }
        row = rows.get(spec.username)
        if row is None:
            row = rows[spec.username] = User(username=spec.username, **values)
            session.add(row)
            tally.created += 1
            added = {"username": spec.username, "roles": _plain(list(spec.roles))}
            trail.append(_Audited("user.added", "user", row, added))
        else:
            fields = _assign_audited(row, values)
            _count(tally, changed=bool(fields))
            if fields:
                # Roles and standing in full; contact details and ids by name only, as
                # ``PATCH /api/users`` audits them.
                shown = {
                    name: change if name in ("roles", "active") else {"changed": True}
                    for name, change in fields.items()
                }
                changed = {"username": spec.username, "fields": shown}
                trail.append(_Audited("user.changed", "user", row, changed))
    declared = {spec.username for spec in manifest.users}
    for username, row in rows.items():
        if username not in declared and row.active and row.managed_by_manifest:
            row.active = False
            tally.retired += 1
            trail.append(_Audited("user.deactivated", "user", row, {"username": username}))
    return rows


def _release_unifi_ids(session: Session, manifest: LabManifest, rows: dict[str, User]) -> None:
    """Clear every UniFi id that is about to move or go, and flush, so that assigning the
    new ones never trips the unique constraint halfway (two people swapping ids, an id
    passing from a removed person to a new one)."""
    specs = {spec.username: spec for spec in manifest.users}
    wanted = {spec.unifi_id: i for i, spec in enumerate(manifest.users) if spec.unifi_id}
    problems: list[ManifestProblem] = []
    released = False
    for username, row in rows.items():
        if row.unifi_user_id is None:
            continue
        spec = specs.get(username)
        if spec is None and not row.managed_by_manifest:
            # Someone the manifest does not own keeps their id; nobody declared may take it.
            if row.unifi_user_id in wanted:
                problems.append(
                    ManifestProblem(
                        f"users[{wanted[row.unifi_user_id]}].unifi_id",
                        f"{row.unifi_user_id!r} is already the UniFi id of {username!r}, "
                        "who is not in the manifest",
                    )
                )
            continue
        target = spec.unifi_id if spec is not None else None
        if row.unifi_user_id != target:
            row.unifi_user_id = None
            released = True
    if problems:
        raise ManifestError(problems)
    if released:
        session.flush()


def _apply_keys(
    session: Session,
    manifest: LabManifest,
    users: dict[str, User],
    now: datetime,
    report: ApplyReport,
    trail: list[_Audited],
    *,
    awaiting: bool = False,
) -> None:
    """Only users whose entry has ``keys`` are touched; the others' keys are managed
    elsewhere (``kittylab keys``) and an apply must not revoke them. With ``awaiting``
    (an apply over the API) new keys await a second person's confirmation."""
    rows: dict[tuple[UUID, str], UserKey] = {
        (k.user_id, key_material(k.public_key)): k for k in session.scalars(select(UserKey))
    }
    tally = report.keys
    for spec in manifest.users:
        if spec.keys is None:
            continue
        user = users[spec.username]
        declared: set[str] = set()
        for key in spec.keys:
            material = key_material(key.public_key)
            declared.add(material)
            row = rows.get((user.id, material))
            if row is None:
                added = UserKey(
                    user_id=user.id,
                    name=key.name,
                    public_key=key.public_key,
                    awaiting_confirmation=awaiting,
                )
                session.add(added)
                tally.created += 1
                trail.append(_key_change("key.added", spec.username, added))
            elif row.revoked_at is not None:
                report.warnings.append(
                    f"key {key.name!r} of {spec.username!r} was revoked and stays revoked; "
                    "make a new key pair and list that instead"
                )
                tally.unchanged += 1
            else:
                changed = _sync(row, {"name": key.name, "public_key": key.public_key})
                _count(tally, changed=changed)
        for (user_id, material), row in rows.items():
            if user_id == user.id and material not in declared and row.revoked_at is None:
                row.revoked_at = now
                tally.retired += 1
                trail.append(_key_change("key.revoked", spec.username, row))


def _key_change(action: str, username: str, key: UserKey) -> _Audited:
    # The key's name and type say which key it was; the key itself is public but long.
    details = {"user": username, "name": key.name, "key_type": key.public_key.split()[0]}
    return _Audited(action, "user_key", key, details)


def _plain(value: Any) -> Any:
    """A column value as JSON for the audit log (UUIDs, enums and times as text)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _policy_change(policy: AccessPolicy, change: str, **extra: Any) -> _Audited:
    details = {"policy": policy.name, "change": change, **extra}
    return _Audited("policy.changed", "access_policy", policy, details)


def _apply_policies(
    session: Session,
    manifest: LabManifest,
    zones: dict[str, Zone],
    now: datetime,
    report: ApplyReport,
    trail: list[_Audited],
) -> None:
    rows = {p.name: p for p in session.scalars(select(AccessPolicy))}
    tally = report.policies
    for spec in manifest.policies:
        values = {
            "zone_id": zones[spec.zone].id,
            "intents": list(spec.intents),
            "required_roles": list(spec.required_roles),
            "requires_dual_confirm": spec.requires_dual_confirm,
            "requires_presence": spec.requires_presence,
            "presence_of": spec.presence_of,
            "pqe_checks": copy.deepcopy(spec.pqe_checks),
            "retired_at": None,
        }
        row = rows.get(spec.name)
        if row is None:
            created = AccessPolicy(name=spec.name, **values)
            session.add(created)
            tally.created += 1
            rules = {"zone": spec.zone, **_plain(values)}
            del rules["zone_id"], rules["retired_at"]
            trail.append(_policy_change(created, "created", rules=rules))
        else:
            fields = _assign_audited(row, values)
            _count(tally, changed=bool(fields))
            if fields:
                trail.append(_policy_change(row, "updated", fields=fields))
    declared = {spec.name for spec in manifest.policies}
    for name, row in rows.items():
        if name in declared or row.retired_at is not None:
            continue
        if session.scalar(select(exists().where(SafetyEvent.policy_id == row.id))):
            row.retired_at = now  # safety events still point at it: keep it, governing nothing
            trail.append(_policy_change(row, "retired"))
        else:
            trail.append(_policy_change(row, "deleted"))
            session.delete(row)
        tally.retired += 1


def _remove_undeclared_zones(
    session: Session,
    manifest: LabManifest,
    zones: dict[str, Zone],
    report: ApplyReport,
    trail: list[_Audited],
) -> None:
    declared = {spec.name for spec in manifest.zones}
    for name, row in zones.items():
        if name in declared:
            continue
        referenced = session.scalar(
            select(
                exists().where(Device.zone_id == row.id)
                | exists().where(SafetyEvent.zone_id == row.id)
                | exists().where(AccessPolicy.zone_id == row.id)
            )
        )
        if referenced:
            report.warnings.append(
                f"zone {name!r} is no longer declared but devices, policies or safety "
                "records still refer to it, so it is kept"
            )
        else:
            trail.append(_Audited("zone.removed", "zone", row, {"name": name}))
            session.delete(row)
            report.zones.retired += 1
