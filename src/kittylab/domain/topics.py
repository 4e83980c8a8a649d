"""KittyLab's MQTT topic names, in one place.

Every topic level that comes from data (a device's external id, a conversation id) is
validated where the data enters (``validate_external_id`` bans ``/``, ``#`` and ``+``), so
a name can never widen a subscription or escape its subtree.
"""

from __future__ import annotations

from uuid import UUID

ROOT = "kitty"
DEVICE_STATE_WILDCARD = f"{ROOT}/devices/+/state"
DEVICE_COMMAND_WILDCARD = f"{ROOT}/devices/+/cmd"
DEVICE_REPLY_WILDCARD = f"{ROOT}/devices/+/reply"
TELEMETRY_WILDCARD = f"{ROOT}/telemetry/#"
MONITOR_WILDCARD = f"{ROOT}/monitor/+"
SIMULATED_DEVICES = f"{ROOT}/simulator/devices"
"""The devices the demo lab's simulator is to simulate, retained, published by KittyLab's
own processes as the lab changes (``devices.simulated_lab``; issue 14): the simulator
process learns of new and retired devices from it, never from the database."""


def device_command(external_id: str) -> str:
    return f"{ROOT}/devices/{external_id}/cmd"


def device_state(external_id: str) -> str:
    return f"{ROOT}/devices/{external_id}/state"


def device_reply(external_id: str) -> str:
    return f"{ROOT}/devices/{external_id}/reply"


def conversation_context(conversation_id: UUID | str) -> str:
    return f"{ROOT}/ctx/{conversation_id}"


def job(job_id: UUID | str) -> str:
    return f"{ROOT}/jobs/{job_id}"


def monitor(job_id: UUID | str) -> str:
    """A detector's print-monitoring event about a print job (``monitoring.ingest``)."""
    return f"{ROOT}/monitor/{job_id}"


def safety(event_id: UUID | str) -> str:
    return f"{ROOT}/safety/{event_id}"


def zone_stop(zone_id: UUID | str) -> str:
    """A stop of one zone was requested (``safety.stop``)."""
    return f"{ROOT}/zones/{zone_id}/stop"


LAB_STOP = f"{ROOT}/lab/stop"
"""A stop of the whole lab was requested (``safety.stop``)."""


def telemetry(external_id: str, topic: str) -> str:
    return f"{ROOT}/telemetry/{external_id}/{topic}"


def device_of(topic: str) -> str | None:
    """The external id in ``kitty/devices/<id>/…`` or ``kitty/telemetry/<id>/…``."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[0] == ROOT and parts[1] in ("devices", "telemetry"):
        return parts[2]
    return None
