"""Who may ask a device for what: the role × intent-class table (issue 13, hole 5).

Every intent falls in one class:

- *read* (``sensor_read``, ``printer_status``, ``camera_snapshot``): anyone signed in;
- *safe direction* (pause, cancel, cool down, power off, lock): operators,
  safety, admin, and the owner of a print job for the printer of that job;
- *actuate* (everything else, lights included, and a manifest's own intents): operators,
  safety, admin.

From outside the lab's trusted networks (``Principal.remote``), only *read* passes,
whatever the role (``domain.networks``).

A hazardous command (held for approval, decided by the zone's policies in
``dispatch.submit``) is an actuation first: its requester must be allowed to actuate
before it is held. Engineers read, design, queue prints and pause or cancel their own
jobs; they do not switch equipment.

A person's ``print_start`` is no command of theirs: it becomes a print job (issue 16,
``fabrication.print_requests``), which ``authorise_print`` admits — the roles that queue
prints, engineers among them, from inside the trusted networks. The job's start is then the
service's (a ``SystemActor``), on the printer's rules like any command.

An internal process (the print tracker's scene, the watcher's cooldown, a job's start for
its owner) is a ``SystemActor``: it may ask for any non-hazardous intent in its own name and
records the person it acts for as the requester. Routers never build one; they pass the
caller's ``Principal``, so no request can carry a bypass.

The table is pure: ``authorise`` decides from the requester, the intent and whether the
requester owns the print job on the device (the caller looks that up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.networks import OutsideTrustedNetworks
from kittylab.domain.principal import Principal


class IntentClass(StrEnum):
    READ = "read"
    SAFE_DIRECTION = "safe_direction"
    ACTUATE = "actuate"


INTENT_CLASSES: Mapping[str, IntentClass] = {
    "sensor_read": IntentClass.READ,
    "printer_status": IntentClass.READ,
    "camera_snapshot": IntentClass.READ,
    "print_pause": IntentClass.SAFE_DIRECTION,
    "print_cancel": IntentClass.SAFE_DIRECTION,
    "printer_cooldown": IntentClass.SAFE_DIRECTION,
    "power_off": IntentClass.SAFE_DIRECTION,
    "door_lock": IntentClass.SAFE_DIRECTION,
    "light_on": IntentClass.ACTUATE,
    "light_off": IntentClass.ACTUATE,
    "light_set_brightness": IntentClass.ACTUATE,
    "power_on": IntentClass.ACTUATE,
    "door_unlock": IntentClass.ACTUATE,
    "print_start": IntentClass.ACTUATE,
    "print_resume": IntentClass.ACTUATE,
    "printer_heat": IntentClass.ACTUATE,
}
"""Every catalogue intent (``domain.devices.INTENT_CATALOGUE``), classed explicitly."""

ACTUATING_ROLES: tuple[Role, ...] = (Role.OPERATOR, Role.SAFETY, Role.ADMIN)
"""Who may switch equipment (the *actuate* class, and any *safe direction*)."""

PRINTING_ROLES: tuple[Role, ...] = (Role.OPERATOR, Role.ENGINEER, Role.SAFETY, Role.ADMIN)
"""Who may ask for a print: it becomes a print job, queued, started by the service and
watched (the roles of ``POST /api/fabrication/jobs``)."""


def intent_class(intent: str) -> IntentClass:
    """The intent's class. An intent the table does not name (a manifest's own) is an
    *actuation*: failing closed, it never becomes a read or a safe direction by omission."""
    return INTENT_CLASSES.get(intent, IntentClass.ACTUATE)


@dataclass(frozen=True)
class SystemActor:
    """An internal process asking in its own name (``name``, for logs and refusals), on
    behalf of ``on_behalf_of`` (recorded as the command's requester). Built only by the
    service's own processes (tracker, watcher, monitor, job start), never from a request."""

    name: str
    on_behalf_of: UUID


Requester = Principal | SystemActor


def requester_id(requester: Requester) -> UUID:
    """The user recorded as the command's requester."""
    return requester.on_behalf_of if isinstance(requester, SystemActor) else requester.user_id


def _roles(roles: tuple[Role, ...]) -> str:
    names = [r.value for r in roles]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def authorise(requester: Requester, intent: str, *, owns_job_on_device: bool = False) -> None:
    """Allow the request or raise ``PermissionDenied`` naming the role it needs.

    ``owns_job_on_device``: the requester owns the print job this request is about (the
    caller checked it against the database); it opens the *safe direction* only."""
    if isinstance(requester, SystemActor):
        return  # hazardous intents are refused to internal callers by dispatch.submit
    cls = intent_class(intent)
    if requester.remote and cls is not IntentClass.READ:
        # From outside the lab's trusted networks a request reads, whatever its role.
        raise OutsideTrustedNetworks(intent)
    if cls is IntentClass.READ or requester.has_any(*ACTUATING_ROLES):
        return
    held = ", ".join(sorted(r.value for r in requester.roles)) or "no"
    if cls is IntentClass.SAFE_DIRECTION:
        if owns_job_on_device:
            return
        raise PermissionDenied(
            f"your role ({held}) may not do that to someone else's equipment ({intent} needs "
            f"the {_roles(ACTUATING_ROLES)} role, or a print job of yours on the device)"
        )
    raise PermissionDenied(
        f"your role ({held}) may not switch equipment ({intent} needs the "
        f"{_roles(ACTUATING_ROLES)} role)"
    )


def authorise_print(requester: Principal) -> None:
    """Allow a person's request for a print (a ``print_start``, which becomes a print job)
    or raise: ``OutsideTrustedNetworks`` from outside the lab (a print heats and moves a
    machine), ``PermissionDenied`` naming the roles it needs otherwise."""
    if requester.remote:
        raise OutsideTrustedNetworks("print_start")
    if requester.has_any(*PRINTING_ROLES):
        return
    held = ", ".join(sorted(r.value for r in requester.roles)) or "no"
    raise PermissionDenied(
        f"your role ({held}) may not queue prints (that needs the {_roles(PRINTING_ROLES)} role)"
    )
