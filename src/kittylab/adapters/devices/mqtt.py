"""Generic MQTT devices, and the simulated lab, which speaks the same protocol.

Protocol (documented for device makers in docs/integrations/mqtt.md):
- KittyLab publishes commands to ``kitty/devices/<external_id>/cmd`` with QoS 1, not
  retained: ``{"requestId": "...", "intent": "light_set_brightness", "payload": {...}}``
  plus ``signed``, ``signature`` and ``keyId``: the lab's Ed25519 signature over the id,
  device, intent, payload and an expiry (``safety.command_signature``), which a device
  that can verify checks before acting, refusing a replay.
- The device publishes its normalized state, retained, to ``kitty/devices/<id>/state``
  whenever it changes (and may repeat it as a heartbeat).
- The device may answer a command on ``kitty/devices/<id>/reply`` with
  ``{"requestId": "...", "ok": false, "reason": "..."}``; a refusal fails the command at
  once with that reason instead of waiting for the confirmation timeout. A refusal marked
  ``"duplicate": true`` (a command received twice) is ignored: the first delivery stands.

A state is taken only as strict JSON (no ``NaN`` or ``Infinity``), at most 64 KiB and 32
levels deep, with finite numbers, as an object; anything else is ignored (and logged, a few
times) and the device's last good state stands. ``state`` also checks it against the
normalized state of the device's kind (``domain.payload_checks``): a state a light cannot
have makes the device unreadable rather than believed (issue 13).

The payload travels as JSON, so nothing in it can become another message; a ``print_start``
file is still refused unless it is a plain file name (``kittylab.domain.file_names``), as
every printer driver refuses it, because the device on the other end will use it as one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from kittylab.adapters.bus.mqtt import BusUnavailable, MqttBus
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain import file_names, topics
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.payload_checks import check_device_state, parse_bus_json
from kittylab.safety.command_signature import CommandSigner

log = logging.getLogger(__name__)

FIRST_STATE_WAIT_SECONDS = 2.0
"""How long ``state`` waits for a device it has not heard from yet (a retained state
arrives right after subscribing, so this only matters just after start)."""
PUBLISH_CONFIRM_SECONDS = 5.0
MAX_REMEMBERED_REFUSALS = 1000
IGNORED_STATE_LOG_SECONDS = 300.0
"""A device that keeps sending bad states is logged once per this many seconds."""


class MqttDeviceDriver:
    def __init__(self, bus: MqttBus, signer: CommandSigner) -> None:
        self._bus = bus
        self._signer = signer
        self._states: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, asyncio.Event] = {}
        self._refusals: dict[str, str] = {}
        """Reasons by request id (insertion-ordered, bounded)."""
        self._ignored_logged: dict[str, float] = {}
        self._checked: dict[str, tuple[dict[str, Any], DeviceKind]] = {}
        """The state object last found valid for each device (held, and compared by
        identity, so a new state is never mistaken for it; see ``state``)."""
        bus.subscribe(topics.DEVICE_STATE_WILDCARD, self._on_state)
        bus.subscribe(topics.DEVICE_REPLY_WILDCARD, self._on_reply)

    async def send(
        self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]
    ) -> str | None:
        if intent == "print_start":
            file_names.refuse_unless_plain(payload.get("file"), device.external_id)
        request_id = secrets.token_hex(8)
        message = self._signer.sign(request_id, device.external_id, intent, payload)
        try:
            await self._bus.publish_now(
                topics.device_command(device.external_id),
                message,
                qos=1,
                confirm_within=PUBLISH_CONFIRM_SECONDS,
            )
        except BusUnavailable as exc:
            raise DeviceUnavailable(f"{device.external_id}: {exc}") from exc
        return request_id

    def refusal(self, device: DeviceTarget, receipt: str) -> str | None:
        return self._refusals.get(receipt)

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        ext = device.external_id
        if ext not in self._states:
            seen = self._seen.setdefault(ext, asyncio.Event())
            try:
                await asyncio.wait_for(seen.wait(), FIRST_STATE_WAIT_SECONDS)
            except TimeoutError:
                raise DeviceUnavailable(
                    f"{ext} has not reported a state on {topics.device_state(ext)}"
                ) from None
        heard = self._states[ext]
        # A confirmation reads the same state many times: each one heard is checked once
        # per kind (issue 14), and every read still gets its own copy.
        checked = self._checked.get(ext)
        if checked is None or checked[0] is not heard or checked[1] is not device.kind:
            try:
                check_device_state(device.kind, dict(heard), "state")
            except ValidationFailed as exc:
                raise DeviceUnavailable(
                    f"{ext} reported a state a {device.kind.value} cannot have ({exc})"
                ) from None
            self._checked[ext] = (heard, device.kind)
        return dict(heard)

    async def close(self) -> None:
        """Nothing to release: the bus belongs to the process."""

    async def _on_state(self, topic: str, payload: bytes) -> None:
        ext = topics.device_of(topic)
        if ext is None:
            return
        if not payload:
            return  # an empty retained message clears the topic
        try:
            state = parse_bus_json(payload, "state")
            if not isinstance(state, dict):
                raise ValidationFailed("state", "must be a JSON object")
        except (ValidationFailed, PayloadTooLarge) as exc:
            self._ignored(ext, str(exc))
            return
        self._states[ext] = state
        self._seen.setdefault(ext, asyncio.Event()).set()

    def _ignored(self, ext: str, reason: str) -> None:
        now = time.monotonic()
        last = self._ignored_logged.get(ext)
        if last is not None and now - last < IGNORED_STATE_LOG_SECONDS:
            return
        if len(self._ignored_logged) >= MAX_REMEMBERED_REFUSALS:
            self._ignored_logged.clear()  # any client can invent device ids
        self._ignored_logged[ext] = now
        log.warning("ignoring a state from %s: %s", ext, reason)

    async def _on_reply(self, topic: str, payload: bytes) -> None:
        ext = topics.device_of(topic)
        if ext is None:
            return
        try:
            reply = json.loads(payload)
        except ValueError:
            return
        if not isinstance(reply, dict) or reply.get("ok") is not False:
            return
        if reply.get("duplicate") is True:
            return  # a second delivery refused; the first one's outcome stands
        request_id = reply.get("requestId")
        if isinstance(request_id, str):
            self._refusals[request_id] = str(reply.get("reason") or f"{ext} refused the command")
            while len(self._refusals) > MAX_REMEMBERED_REFUSALS:  # oldest first
                self._refusals.pop(next(iter(self._refusals)))
