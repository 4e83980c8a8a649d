"""Equipment a lab already runs in Home Assistant, through its REST API.

A device's ``connection`` names the Home Assistant instance, a long-lived access token and
the entity: ``{url, token: "${HA_TOKEN}", entity_id}``. Every request carries
``Authorization: Bearer <token>``.

Intents become service calls (``POST /api/services/<domain>/<service>``) on that entity:

====================== ==========================================================
light_on / light_off   ``light.turn_on`` / ``light.turn_off`` (or ``switch.*`` for a
                       lamp on a smart plug)
light_set_brightness   ``light.turn_on`` with ``brightness_pct`` (0 turns it off)
door_lock / unlock     ``lock.lock`` / ``lock.unlock``
power_on / power_off   ``switch.turn_on`` / ``switch.turn_off`` (``input_boolean`` too)
camera_snapshot        ``GET /api/camera_proxy/<camera>``: the current image
sensor_read            ``homeassistant.update_entity``: make the integration poll now
====================== ==========================================================

State is ``GET /api/states/<entity_id>`` mapped to the kind's normalized shape. Before a
service call the driver reads the entity: Home Assistant answers a call naming an entity
it does not have with 200 and no change, so the driver checks first.

Errors: 401/403 (token refused), 404 on the entity, an ``unavailable``/``unknown`` entity,
an entity of the wrong domain for the device's kind, timeouts and connection failures are
``DeviceUnavailable``; 400 (invalid service data) and
500 (the integration raised, e.g. a jammed lock) are ``DeviceRefused``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from kittylab.devices.ports import DeviceTarget, DeviceUnavailable, expand_connection
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused

logger = logging.getLogger(__name__)

# Which Home Assistant entity domains can stand for each kind of lab device.
DOMAINS: Mapping[DeviceKind, tuple[str, ...]] = {
    DeviceKind.LIGHT: ("light", "switch"),
    DeviceKind.DOOR: ("lock",),
    DeviceKind.POWER: ("switch", "input_boolean"),
    DeviceKind.CAMERA: ("camera",),
    DeviceKind.SENSOR: ("sensor",),
}
NO_READING = ("unavailable", "unknown")
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class _Entity:
    base_url: str
    token: str = field(repr=False)
    entity_id: str
    domain: str
    label: str  # host:port, safe to show

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _entity(device: DeviceTarget) -> _Entity:
    connection = expand_connection(device.connection)
    url, token, entity_id = (
        _required(device, connection, key) for key in ("url", "token", "entity_id")
    )
    try:
        parsed = httpx.URL(url.strip().rstrip("/"))
    except httpx.InvalidURL as exc:
        raise DeviceUnavailable(f"{device.external_id}: connection.url is not a URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeviceUnavailable(f"{device.external_id}: connection.url must be http(s)://host")
    domain, dot, _ = entity_id.partition(".")
    allowed = DOMAINS.get(device.kind, ())
    if not dot or domain not in allowed:
        raise DeviceUnavailable(
            f"{device.external_id}: {entity_id!r} is not a "
            f"{' or '.join(allowed) or 'supported'} entity for a {device.kind.value}"
        )
    label = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
    base = str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
    return _Entity(base.rstrip("/"), token, entity_id, domain, label)


def _required(device: DeviceTarget, connection: Mapping[str, Any], key: str) -> str:
    value = connection.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DeviceUnavailable(f"{device.external_id}: connection.{key} is not set")
    return value.strip()


class HomeAssistantDriver:
    """The ``homeassistant`` integration. ``timeout`` bounds each HTTP request (Home
    Assistant answers a service call after at most 10 s); ``transport`` is httpx's seam."""

    def __init__(
        self, *, timeout: float = 15.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._snapshots: dict[UUID, int] = {}
        self._latest_images: dict[UUID, bytes] = {}

    async def send(self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]) -> None:
        entity = _entity(device)
        snapshot = intent == "camera_snapshot" and device.kind is DeviceKind.CAMERA
        # An intent the kind cannot carry out is refused before any request.
        call = None if snapshot else _service_call(device, entity, intent, payload)
        await self._read(entity)  # 404 / unavailable fail here, before any service call
        if call is None:
            image = await self._snapshot(device, entity)
            self._latest_images[device.id] = image
            self._snapshots[device.id] = self._snapshots.get(device.id, 0) + 1
            return
        await self._call_service(device, entity, *call)

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        entity = _entity(device)
        body = await self._read(entity)
        return _normalize(device, entity, body, self._snapshots.get(device.id, 0))

    def latest_snapshot(self, device: DeviceTarget) -> bytes | None:
        """The image the last ``camera_snapshot`` of ``device`` fetched, if any."""
        return self._latest_images.get(device.id)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---- HTTP -------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
        return self._http

    async def _request(self, entity: _Entity, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = await self._client().request(
                method, f"{entity.base_url}{path}", headers=entity.headers(), **kw
            )
        except httpx.TimeoutException as exc:
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} did not answer within {self._timeout:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code in (401, 403):
            raise DeviceUnavailable(f"Home Assistant at {entity.label} rejected the token")
        if response.status_code in (502, 503, 504):
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} is not ready ({response.status_code})"
            )
        return response

    async def _read(self, entity: _Entity) -> dict[str, Any]:
        response = await self._request(entity, "GET", f"/api/states/{entity.entity_id}")
        if response.status_code == 404:
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} has no entity {entity.entity_id}"
            )
        if response.status_code != 200:
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} answered {response.status_code} "
                f"for {entity.entity_id}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise DeviceUnavailable(
                f"Home Assistant at {entity.label} sent a malformed state"
            ) from exc
        if not isinstance(body, dict) or "state" not in body:
            raise DeviceUnavailable(f"Home Assistant at {entity.label} sent a malformed state")
        if body["state"] in NO_READING and entity.domain != "sensor":
            raise DeviceUnavailable(f"Home Assistant reports {entity.entity_id} {body['state']}")
        return body

    async def _call_service(
        self,
        device: DeviceTarget,
        entity: _Entity,
        domain: str,
        service: str,
        data: dict[str, Any],
    ) -> None:
        response = await self._request(
            entity, "POST", f"/api/services/{domain}/{service}", json=data
        )
        if response.status_code == 200:
            return
        reason = _reason(response)
        if response.status_code == 400:
            raise DeviceRefused(
                f"{device.external_id}: Home Assistant refused {domain}.{service} ({reason})"
            )
        if response.status_code == 404:
            raise DeviceRefused(
                f"{device.external_id}: Home Assistant has no service {domain}.{service}"
            )
        raise DeviceRefused(
            f"{device.external_id}: Home Assistant could not {domain}.{service} "
            f"{entity.entity_id} ({reason})"
        )

    async def _snapshot(self, device: DeviceTarget, entity: _Entity) -> bytes:
        response = await self._request(entity, "GET", f"/api/camera_proxy/{entity.entity_id}")
        if response.status_code != 200:
            raise DeviceRefused(
                f"{device.external_id}: Home Assistant could not take a snapshot "
                f"({_reason(response)})"
            )
        if not response.headers.get("content-type", "").startswith("image/"):
            raise DeviceRefused(f"{device.external_id}: the camera proxy returned no image")
        if len(response.content) > MAX_SNAPSHOT_BYTES:
            raise DeviceRefused(f"{device.external_id}: the snapshot is over 20 MiB")
        return response.content


def _service_call(
    device: DeviceTarget, entity: _Entity, intent: str, payload: Mapping[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    target: dict[str, Any] = {"entity_id": entity.entity_id}
    kind, domain = device.kind, entity.domain
    if kind is DeviceKind.LIGHT and intent in ("light_on", "light_off"):
        return domain, "turn_on" if intent == "light_on" else "turn_off", target
    if kind is DeviceKind.LIGHT and intent == "light_set_brightness":
        if domain != "light":
            raise DeviceRefused(f"{device.external_id}: {entity.entity_id} cannot be dimmed")
        level = int(payload["brightness"])
        if level == 0:
            return "light", "turn_off", target
        return "light", "turn_on", {**target, "brightness_pct": level}
    if kind is DeviceKind.DOOR and intent in ("door_lock", "door_unlock"):
        return "lock", "lock" if intent == "door_lock" else "unlock", target
    if kind is DeviceKind.POWER and intent in ("power_on", "power_off"):
        return domain, "turn_on" if intent == "power_on" else "turn_off", target
    if kind is DeviceKind.SENSOR and intent == "sensor_read":
        return "homeassistant", "update_entity", target
    raise DeviceRefused(
        f"{device.external_id}: the homeassistant integration cannot {intent} a {kind.value}"
    )


def _normalize(
    device: DeviceTarget, entity: _Entity, body: Mapping[str, Any], snapshots: int
) -> dict[str, Any]:
    state = str(body.get("state"))
    attributes = body.get("attributes") or {}
    kind = device.kind
    if kind is DeviceKind.LIGHT:
        on = state == "on"
        light: dict[str, Any] = {"on": on}
        raw = attributes.get("brightness")
        if not on:
            light["brightness"] = 0
        elif isinstance(raw, int | float):
            light["brightness"] = round(float(raw) * 100 / 255)
        return light
    if kind is DeviceKind.DOOR:
        # "unlocking" is still locked and "locking" not yet locked: a command is confirmed
        # only once the bolt has moved. "jammed" and "open" are not locked.
        return {"locked": state in ("locked", "unlocking")}
    if kind is DeviceKind.POWER:
        power: dict[str, Any] = {"on": state == "on"}
        for key in ("current_power_w", "power"):
            if isinstance(attributes.get(key), int | float):
                power["watts"] = float(attributes[key])
                break
        return power
    if kind is DeviceKind.CAMERA:
        return {"streaming": state == "streaming", "snapshots_taken": snapshots}
    # A sensor: one measure, named by its device class.
    try:
        value = float(state)
    except ValueError:
        raise DeviceUnavailable(
            f"Home Assistant has no reading for {entity.entity_id} ({state})"
        ) from None
    measure = str(attributes.get("device_class") or device.attributes.get("measure") or "value")
    return {measure: {"value": value, "unit": str(attributes.get("unit_of_measurement") or "")}}


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text else f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return f"HTTP {response.status_code}"
