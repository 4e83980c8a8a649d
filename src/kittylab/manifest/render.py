"""The lab as stored, as plain-text tables for a terminal (``kittylab lab show``).

It shows what the database holds, not what a manifest says, so retired devices and
inactive users appear too. Secrets never do: API tokens are not read at all, public keys
are only counted, and connection settings are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, User, UserKey, Zone
from kittylab.domain.enums import PresenceSource
from kittylab.domain.zones import presence_sources

_NONE = "-"


def render_lab(session: Session) -> str:
    """Four tables (zones, devices, users, policies), sorted by name, separated by a blank
    line. Retired devices sort after the active ones of their zone."""
    zones = list(session.scalars(select(Zone).order_by(Zone.name)))
    zone_names = {z.id: z.name for z in zones}
    devices = list(session.scalars(select(Device)))
    devices.sort(key=lambda d: (zone_names[d.zone_id], d.retired_at is not None, d.external_id))
    active_devices = Counter(d.zone_id for d in devices if d.retired_at is None)
    users = list(session.scalars(select(User).order_by(User.username)))
    live_keys = Counter(
        session.scalars(select(UserKey.user_id).where(UserKey.revoked_at.is_(None)))
    )
    policies = list(session.scalars(select(AccessPolicy).order_by(AccessPolicy.name)))

    sections = [
        _table(
            "Zones",
            ("name", "hazard", "ppe", "devices", "presence counts from"),
            [
                (
                    z.name,
                    z.hazard_level.value,
                    _yes(z.requires_ppe),
                    str(active_devices[z.id]),
                    _sources(z),
                )
                for z in zones
            ],
        ),
        _table(
            "Devices",
            ("external_id", "kind", "zone", "integration", "aliases", "state", "retired"),
            [
                (
                    d.external_id,
                    d.kind.value,
                    zone_names[d.zone_id],
                    d.integration,
                    ", ".join(d.aliases) or _NONE,
                    d.online_state.value,
                    _date(d.retired_at),
                )
                for d in devices
            ],
        ),
        _table(
            "Users",
            ("username", "display_name", "roles", "active", "keys", "unifi_id"),
            [
                (
                    u.username,
                    u.display_name,
                    ", ".join(r.value for r in u.roles),
                    _yes(u.active),
                    str(live_keys[u.id]),
                    u.unifi_user_id or _NONE,
                )
                for u in users
            ],
        ),
        _table(
            "Policies",
            ("name", "zone", "intents", "roles", "dual", "presence", "ppe"),
            [
                (
                    p.name,
                    zone_names[p.zone_id],
                    "(retired)" if p.retired_at else ", ".join(p.intents),
                    ", ".join(r.value for r in p.required_roles),
                    _yes(p.requires_dual_confirm),
                    f"yes ({p.presence_of})" if p.requires_presence else _NONE,
                    ", ".join(p.pqe_checks.get("required", [])) or _NONE,
                )
                for p in policies
            ],
        ),
    ]
    return "\n\n".join(sections) + "\n"


def _sources(zone: Zone) -> str:
    counting = presence_sources(zone.hazard_level, zone.presence_sources)
    shown = ", ".join(s.value for s in PresenceSource if s in counting)
    return shown if zone.presence_sources is not None else f"{shown} (default)"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _date(value: datetime | None) -> str:
    # UTC whatever the database session's time zone, so two terminals print the same.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if value else _NONE


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A titled table with columns padded to their widest cell; ``(none)`` when empty."""
    if not rows:
        return f"{title}\n  (none)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(r) for r in rows)])
