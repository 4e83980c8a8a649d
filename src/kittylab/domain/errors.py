"""The project's own error hierarchy. Entrypoints map these to status and exit codes.

KittyLabError
├── DomainError                 a rule of the data model was broken
│   ├── ValidationFailed        a field holds a value the model forbids  (HTTP 422)
│   ├── InvalidTransition       a state machine was asked for a move it does not allow (409)
│   ├── Conflict                the request clashes with stored state (409)
│   ├── DeviceRefused           the device's own state forbids it (409)
│   ├── SignatureRejected       an approval's signature or key does not hold up (``reason``)
│   └── PayloadTooLarge         an ingest payload is over its size limit (413)
├── NotFound                    no record with that id (404)
├── AuthenticationRequired      no or unknown credentials (401)
├── PermissionDenied            credentials fine, role insufficient (403)
└── InfrastructureError         a dependency (database, broker, sender) failed
    ├── DataDirInUse            another KittyLab process owns the data directory
    └── Busy                    no capacity now; retry after ``retry_after_seconds`` (503)
"""

from __future__ import annotations

from enum import Enum


class KittyLabError(Exception):
    """Base of every error KittyLab raises on purpose."""


class DomainError(KittyLabError):
    pass


class ValidationFailed(DomainError):
    """A value broke a rule. ``field`` is a dotted path to the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransition(DomainError):
    def __init__(self, entity: str, current: Enum, attempted: Enum) -> None:
        super().__init__(f"{entity} is {current.value}; it cannot move to {attempted.value}")
        self.entity = entity
        self.current = current
        self.attempted = attempted


class Conflict(DomainError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DeviceRefused(DomainError):
    """The device's current state does not allow the request (pausing an idle printer)."""


class SignatureRejected(DomainError):
    """An approval signature was refused: malformed, made for another purpose or key, by a
    revoked or unknown key, or it does not verify. ``reason`` says which, precisely."""

    field = "signature"

    def __init__(self, reason: str) -> None:
        super().__init__(f"signature: {reason}")
        self.reason = reason


class PayloadTooLarge(DomainError):
    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field}: {size} bytes is over the {limit}-byte limit")
        self.field = field
        self.size = size
        self.limit = limit


class NotFound(KittyLabError):
    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"no {entity} with id {key}")
        self.entity = entity
        self.key = key


class AuthenticationRequired(KittyLabError):
    pass


class PermissionDenied(KittyLabError):
    pass


class InfrastructureError(KittyLabError):
    pass


class DataDirInUse(InfrastructureError):
    pass


class Busy(InfrastructureError):
    """Every worker that could serve the request is in use and none freed up in time;
    nothing was done, and the same request may succeed after ``retry_after_seconds``."""

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
