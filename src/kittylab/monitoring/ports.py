"""Ports for camera-based print monitoring: a failure detector and a snapshot source.

The monitoring service asks a ``SnapshotSource`` for the camera's current frame (evidence
to keep in the artifact store), asks a ``FailureDetector`` what it sees at the camera's
snapshot URL, and folds the answer into ``kittylab.domain.print_monitoring.update``.
Implementations live in ``kittylab.adapters.detectors``; bootstrap chooses them.

Both ports are asynchronous and open no connection until called, so one instance may be
shared by every task of an event loop.

Errors (all ``InfrastructureError``, messages safe to show an operator — no tokens, no
URL credentials or query strings)::

    DetectorUnavailable          the detector could not be reached, timed out, refused
    │                            the credentials or answered something that is not a
    │                            detection list
    └── DetectorCouldNotReadImage the detector answered, but could not fetch or decode
                                  the image at the URL it was given (a camera problem)
    SnapshotUnavailable          the camera's snapshot could not be fetched, was not an
                                 image or was over the size limit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kittylab.domain.errors import InfrastructureError
from kittylab.domain.print_monitoring import BoundingBox, Detection

__all__ = [
    "BoundingBox",
    "Detection",
    "DetectorCouldNotReadImage",
    "DetectorUnavailable",
    "FailureDetector",
    "Snapshot",
    "SnapshotSource",
    "SnapshotUnavailable",
]


class DetectorUnavailable(InfrastructureError):
    """The failure detector could not give an answer for this frame."""


class DetectorCouldNotReadImage(DetectorUnavailable):
    """The detector is up but could not fetch or decode the image it was pointed at."""


class SnapshotUnavailable(InfrastructureError):
    """A camera snapshot could not be fetched as an image within the limits."""


@dataclass(frozen=True)
class Snapshot:
    """One camera frame: the bytes to store and the content type to store them with."""

    data: bytes
    content_type: str  # an image/* media type, without parameters


class FailureDetector(Protocol):
    async def detect(self, image_url: str) -> list[Detection]:
        """The scored boxes the model finds in the image at ``image_url`` (which the
        detector fetches itself; it must be reachable from the detector). An empty list
        is a clean frame. Raises ``DetectorUnavailable`` (or its subclass) otherwise."""
        ...


class SnapshotSource(Protocol):
    async def fetch(self, url: str) -> Snapshot:
        """The image at ``url``; ``SnapshotUnavailable`` when it cannot be had."""
        ...
