"""A protocol-level Home Assistant: the REST API endpoints the driver uses, with entities
whose state the service calls change. Home Assistant itself does not fit here: current
releases need Python 3.13, and the last one for Python 3.11 (2024.1) installs but its
``demo`` entities pull in the conversation, camera and ffmpeg requirements (hassil, numpy,
ffmpeg …) that Home Assistant would otherwise pip-install at run time. This server follows
the documented REST API and the behaviour of Home Assistant's ``api`` component:

- every ``/api/`` route needs ``Authorization: Bearer <long-lived token>``; otherwise 401
  with the text body ``401: Unauthorized``;
- ``GET /api/states/<entity_id>`` → the state object, or 404 ``{"message": "Entity not
  found."}``;
- ``POST /api/services/<domain>/<service>`` → the list of states changed during the call;
  an unknown service or invalid service data → 400 ``400: Bad Request``; an entity id
  that matches nothing changes nothing (200 ``[]``); an integration error (a jammed lock)
  → 500;
- ``GET /api/camera_proxy/<camera entity>`` → the image bytes.

Served by uvicorn on a thread, so synchronous fixtures can own it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

# A 1x1 JPEG: what a camera proxy returns is an image, and the driver checks it is one.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b"
    "0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e3334"
    "32ffc0000b080001000101011100ffc4001f0000010501010101010100000000000000000102030405060708"
    "090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114"
    "328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748"
    "494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2"
    "a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9"
    "eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)


class BadRequest(Exception):
    pass


class IntegrationError(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).isoformat()


class HomeAssistantPeer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.entities: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.camera_requests = 0
        self.pending_readings: dict[str, str] = {}  # applied by homeassistant.update_entity
        self._lock = threading.Lock()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        app = Starlette(
            routes=[
                Route("/api/", self._api_root, methods=["GET"]),
                Route("/api/states/{entity_id}", self._get_state, methods=["GET"]),
                Route("/api/services/{domain}/{service}", self._call, methods=["POST"]),
                Route("/api/camera_proxy/{entity_id}", self._camera, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self.reset()

    # ---- lifecycle and test controls ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Home Assistant peer did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.camera_requests = 0
            self.pending_readings.clear()
            self.entities = {}
            self.put(
                "light.bench",
                "off",
                friendly_name="Bench light",
                brightness=None,
                supported_color_modes=["brightness"],
                color_mode=None,
            )
            self.put("switch.bench_plug_light", "off", friendly_name="Plug-in lamp")
            self.put("lock.lab_door", "locked", friendly_name="Lab door")
            self.put("switch.laser_power", "off", friendly_name="Laser relay", current_power_w=0.0)
            self.put("camera.bench_cam", "idle", friendly_name="Bench camera")
            self.put(
                "sensor.lab_temperature",
                "21.5",
                friendly_name="Lab temperature",
                unit_of_measurement="°C",
                device_class="temperature",
                state_class="measurement",
            )
            self.put("light.unplugged", "unavailable", friendly_name="Unplugged lamp")

    def put(self, entity_id: str, state: str, **attributes: Any) -> None:
        now = _now()
        self.entities[entity_id] = {
            "entity_id": entity_id,
            "state": state,
            "attributes": attributes,
            "last_changed": now,
            "last_updated": now,
            "context": {"id": f"ctx-{time.monotonic_ns()}", "parent_id": None, "user_id": None},
        }

    # ---- API ------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def _api_root(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse("401: Unauthorized", status_code=401)
        return JSONResponse({"message": "API running."})

    async def _get_state(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse("401: Unauthorized", status_code=401)
        with self._lock:
            entity = self.entities.get(request.path_params["entity_id"])
            if entity is None:
                return JSONResponse({"message": "Entity not found."}, status_code=404)
            return JSONResponse(entity)

    async def _camera(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse("401: Unauthorized", status_code=401)
        with self._lock:
            entity = self.entities.get(request.path_params["entity_id"])
            if entity is None or not entity["entity_id"].startswith("camera."):
                return PlainTextResponse("404: Not Found", status_code=404)
            self.camera_requests += 1
        return Response(TINY_JPEG, media_type="image/jpeg")

    async def _call(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse("401: Unauthorized", status_code=401)
        domain = request.path_params["domain"]
        service = request.path_params["service"]
        body = await request.body()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return JSONResponse({"message": "Data should be valid JSON."}, status_code=400)
        with self._lock:
            self.calls.append((domain, service, dict(data)))
            handler = self._services().get((domain, service))
            if handler is None:
                return PlainTextResponse("400: Bad Request", status_code=400)
            ids = data.get("entity_id", [])
            ids = [ids] if isinstance(ids, str) else list(ids)
            changed = []
            try:
                for entity_id in ids:
                    entity = self.entities.get(entity_id)
                    in_domain = domain == "homeassistant" or entity_id.startswith(f"{domain}.")
                    if entity is None or not in_domain:
                        continue  # Home Assistant ignores ids that match no entity
                    before = (entity["state"], dict(entity["attributes"]))
                    handler(entity, data)
                    if (entity["state"], entity["attributes"]) != before:
                        entity["last_updated"] = _now()
                        changed.append(dict(entity))
            except BadRequest:
                return PlainTextResponse("400: Bad Request", status_code=400)
            except IntegrationError:
                return PlainTextResponse("500 Internal Server Error", status_code=500)
            return JSONResponse(changed)

    def _services(self) -> dict[tuple[str, str], Callable[[dict[str, Any], dict[str, Any]], None]]:
        return {
            ("light", "turn_on"): self._light_on,
            ("light", "turn_off"): lambda e, _: self._set(e, "off", brightness=None),
            ("switch", "turn_on"): lambda e, _: self._switch(e, "on"),
            ("switch", "turn_off"): lambda e, _: self._switch(e, "off"),
            ("lock", "lock"): lambda e, _: self._lock_to(e, "locked"),
            ("lock", "unlock"): lambda e, _: self._lock_to(e, "unlocked"),
            ("homeassistant", "update_entity"): self._update_entity,
        }

    @staticmethod
    def _set(entity: dict[str, Any], state: str, **attributes: Any) -> None:
        if entity["state"] != state:
            entity["last_changed"] = _now()
        entity["state"] = state
        entity["attributes"] = {**entity["attributes"], **attributes}

    def _light_on(self, entity: dict[str, Any], data: dict[str, Any]) -> None:
        pct = data.get("brightness_pct")
        if pct is not None:
            if not isinstance(pct, int | float) or not 0 <= pct <= 100:
                raise BadRequest
            if pct == 0:  # Home Assistant turns a light off at brightness 0
                self._set(entity, "off", brightness=None)
                return
            brightness = round(pct * 255 / 100)
        else:
            brightness = entity["attributes"].get("brightness") or 255
        self._set(entity, "on", brightness=brightness, color_mode="brightness")

    def _switch(self, entity: dict[str, Any], state: str) -> None:
        watts = 1450.0 if entity["entity_id"] == "switch.laser_power" and state == "on" else 0.0
        extra = {"current_power_w": watts} if "current_power_w" in entity["attributes"] else {}
        self._set(entity, state, **extra)

    def _lock_to(self, entity: dict[str, Any], state: str) -> None:
        if entity["state"] == "jammed":
            raise IntegrationError  # the lock integration raises HomeAssistantError
        self._set(entity, state)

    def _update_entity(self, entity: dict[str, Any], _: dict[str, Any]) -> None:
        reading = self.pending_readings.pop(entity["entity_id"], None)
        if reading is not None:
            self._set(entity, reading)
