"""Who may read a device's state in an answer (pure).

Reading is open to every role (``domain.actuation``: the *read* class, from anywhere); a
device may narrow it with ``attributes.read_roles`` (a camera in a private room, a sensor
whose readings are personal): then only those roles, and safety and admin, who read every
record, may see its state. An unknown role name in that list grants nothing (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kittylab.domain import actuation
from kittylab.domain.enums import DeviceKind, Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal

READ_INTENTS: Mapping[DeviceKind, str] = {
    DeviceKind.PRINTER: "printer_status",
    DeviceKind.SENSOR: "sensor_read",
    DeviceKind.CAMERA: "camera_snapshot",
}
"""The intent that asks a device of each kind for a fresh reading; the other kinds report
on their own and have none."""

READ_ROLES_ATTRIBUTE = "read_roles"


def read_refusal(caller: Principal, kind: DeviceKind, attributes: Mapping[str, Any]) -> str | None:
    """Why ``caller`` may not read a device's state, or None when they may."""
    try:
        actuation.authorise(caller, READ_INTENTS.get(kind, "printer_status"))
    except PermissionDenied as refusal:
        return str(refusal)
    allowed = attributes.get(READ_ROLES_ATTRIBUTE)
    if allowed is None:
        return None
    if caller.reads_all_records:
        return None
    names = {str(r) for r in allowed} if isinstance(allowed, list) else set()
    known = {r for r in Role if r.value in names}
    if caller.roles & known:
        return None
    wanted = ", ".join(sorted(r.value for r in known)) or "no role"
    return f"its readings are for {wanted} (and safety, admin) only"
