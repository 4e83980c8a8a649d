"""The device driver port: how the command service talks to equipment.

One driver per integration (``simulated``, ``mqtt``, ``octoprint``, ``moonraker``,
``bambu``, ``homeassistant``); bootstrap builds them and registers them by integration
name. A driver is protocol code only: it sends one intent and reads normalized state
(``kittylab.domain.device_state``). Deciding whether a state *confirms* a command, timing
out, retrying and recording belong to the command service, never to a driver.

Contract for implementers:
- Every outbound call has a timeout; a timeout, refused connection, TLS or auth failure
  raises ``DeviceUnavailable`` (with a message safe to show an operator: no secrets).
- The device answering that it cannot do it now (OctoPrint's 409, a Moonraker error
  reply, a Bambu ``result: fail``) raises ``DeviceRefused`` with the device's reason.
- An intent the integration cannot carry out for that kind raises ``DeviceRefused``.
- ``send`` returns once the device has *accepted* the request; it does not wait for the
  state to change. ``state`` returns the device's current normalized state.
- Secrets in ``DeviceTarget.connection`` are ``${ENV_VAR}`` references; expand them with
  ``expand_connection`` at call time and never log the result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import InfrastructureError


class DeviceUnavailable(InfrastructureError):
    """The device (or its hub) could not be reached or did not answer in time."""


@dataclass(frozen=True)
class DeviceTarget:
    """What a driver needs to know about one device (a read-only copy of its record)."""

    id: UUID
    external_id: str
    kind: DeviceKind
    integration: str
    connection: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


class DeviceDriver(Protocol):
    async def send(
        self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]
    ) -> str | None:
        """Ask the device to carry out ``intent`` (payload already validated). Returns a
        receipt when the driver can later tell a refusal of this very request
        (``ReportsRefusals``), else None."""

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        """The device's current state in the normalized shape of its kind."""

    async def close(self) -> None:
        """Release connections; the driver is not used afterwards."""


@runtime_checkable
class ReportsRefusals(Protocol):
    """Drivers whose devices refuse *after* accepting a request (a generic MQTT device's
    reply comes back on another topic) return a receipt from ``send`` and implement this,
    so the refusal reaches the command it belongs to — not whoever reads the state first."""

    def refusal(self, device: DeviceTarget, receipt: str) -> str | None:
        """The device's reason for refusing the request ``receipt`` names, if it did."""


@runtime_checkable
class PrintFileUploader(Protocol):
    """Drivers of printers that keep their own files (OctoPrint, Moonraker, Bambu) also
    implement this, so a fabrication job can put its G-code on the printer before
    ``print_start`` names it."""

    async def upload(self, device: DeviceTarget, filename: str, path: Path) -> None:
        """Store the local file ``path`` on the printer as ``filename`` (replacing one of
        the same name), without starting it."""


_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def expand_connection(connection: Mapping[str, Any]) -> dict[str, Any]:
    """``connection`` with every ``${NAME}`` replaced from the environment.

    A reference to an unset variable raises ``DeviceUnavailable`` naming the variable (not
    its value), so a misconfigured device fails clearly instead of sending an empty key.
    """

    def expand(value: Any) -> Any:
        if isinstance(value, str):

            def lookup(match: re.Match[str]) -> str:
                name = match.group(1)
                found = os.environ.get(name)
                if found is None:
                    raise DeviceUnavailable(f"environment variable {name} is not set")
                return found

            return _ENV_REF.sub(lookup, value)
        if isinstance(value, Mapping):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        return value

    return {key: expand(value) for key, value in connection.items()}
