"""Every enum of the data model, with the exact value names it uses."""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    OPERATOR = "operator"
    ENGINEER = "engineer"
    SAFETY = "safety"
    ADMIN = "admin"


class HazardLevel(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PresenceSource(str, Enum):
    UNIFI = "unifi"
    MANUAL = "manual"
    OVERRIDE = "override"


class PresenceStatus(str, Enum):
    PRESENT = "present"
    UNKNOWN = "unknown"
    VACATED = "vacated"


class DeviceKind(str, Enum):
    PRINTER = "printer"
    CAMERA = "camera"
    LIGHT = "light"
    DOOR = "door"
    POWER = "power"
    SENSOR = "sensor"


class OnlineState(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    FAULT = "fault"


class CommandStatus(str, Enum):
    PENDING = "pending"
    SENT = "sent"
    ACKED = "acked"
    FAILED = "failed"


class Tier(str, Enum):
    LOCAL = "local"
    MCP = "mcp"
    FRONTIER = "frontier"


class CADPolicyMode(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class CADJobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class CADProvider(str, Enum):
    ZOO = "zoo"
    TRIPO = "tripo"
    CADQUERY = "cadquery"
    FREECAD = "freecad"
    TRIPOSR = "triposr"
    INSTANTMESH = "instantmesh"


class ArtifactType(str, Enum):
    STEP = "step"
    DXF = "dxf"
    STL = "stl"
    OBJ = "obj"
    PREVIEW = "preview"


class FabricationStatus(str, Enum):
    PREPARING = "preparing"
    PRINTING = "printing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class MonitorEventType(str, Enum):
    FIRST_LAYER_OK = "first_layer_ok"
    SPAGHETTI_DETECTED = "spaghetti_detected"
    NOZZLE_CLOG = "nozzle_clog"
    COMPLETED = "completed"

    @property
    def is_failure(self) -> bool:
        return self in (MonitorEventType.SPAGHETTI_DETECTED, MonitorEventType.NOZZLE_CLOG)


class SafetyEventType(str, Enum):
    HAZARD_REQUEST = "hazard_request"
    UNLOCK = "unlock"
    POWER_ENABLE = "power_enable"
    OVERRIDE = "override"


class SafetyStatus(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class NotificationChannel(str, Enum):
    PUSH = "push"
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"


class NotificationStatus(str, Enum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
