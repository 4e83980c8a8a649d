"""Every enum of the data model, with the exact value names it uses."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    ENGINEER = "engineer"
    SAFETY = "safety"
    ADMIN = "admin"


class HazardLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PresenceSource(StrEnum):
    UNIFI = "unifi"
    MANUAL = "manual"
    OVERRIDE = "override"
    # Extension (issue 13): a check-in confirmed by someone already present in the zone.
    CONFIRMED = "confirmed"
    # Extension (issue 18): a check-in with a personal security key on the zone's own
    # paired wall terminal.
    TERMINAL = "terminal"


class TerminalStatus(StrEnum):
    """A wall terminal (issue 18): ``waiting`` shows a pairing code, ``paired`` is bound to
    a zone, ``revoked`` is done for good."""

    WAITING = "waiting"
    PAIRED = "paired"
    REVOKED = "revoked"


class PresenceStatus(StrEnum):
    PRESENT = "present"
    UNKNOWN = "unknown"
    VACATED = "vacated"


class DeviceKind(StrEnum):
    PRINTER = "printer"
    CAMERA = "camera"
    LIGHT = "light"
    DOOR = "door"
    POWER = "power"
    SENSOR = "sensor"


class OnlineState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    FAULT = "fault"


class CommandStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    ACKED = "acked"
    FAILED = "failed"


class Tier(StrEnum):
    LOCAL = "local"
    MCP = "mcp"
    FRONTIER = "frontier"
    # A question answered from the answer cache (issue 16; an extension of the data
    # model's enum, revision 0013): no tier was asked. Never a tier a caller can force.
    CACHE = "cache"


class CADPolicyMode(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class CADJobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class CADProvider(StrEnum):
    ZOO = "zoo"
    TRIPO = "tripo"
    CADQUERY = "cadquery"
    FREECAD = "freecad"
    TRIPOSR = "triposr"
    INSTANTMESH = "instantmesh"


class ArtifactType(StrEnum):
    STEP = "step"
    DXF = "dxf"
    STL = "stl"
    OBJ = "obj"
    PREVIEW = "preview"


class FabricationStatus(StrEnum):
    PREPARING = "preparing"
    PRINTING = "printing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class MonitorEventType(StrEnum):
    FIRST_LAYER_OK = "first_layer_ok"
    SPAGHETTI_DETECTED = "spaghetti_detected"
    NOZZLE_CLOG = "nozzle_clog"
    COMPLETED = "completed"

    @property
    def is_failure(self) -> bool:
        return self in (MonitorEventType.SPAGHETTI_DETECTED, MonitorEventType.NOZZLE_CLOG)


class SafetyEventType(StrEnum):
    HAZARD_REQUEST = "hazard_request"
    UNLOCK = "unlock"
    POWER_ENABLE = "power_enable"
    OVERRIDE = "override"
    # A lab change (a manifest over the API) that weakens safety, held for a second
    # person (issue 13; an extension of the data model's enum, revision 0006).
    POLICY_CHANGE = "policy_change"


class SafetyStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class NotificationChannel(StrEnum):
    PUSH = "push"
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
