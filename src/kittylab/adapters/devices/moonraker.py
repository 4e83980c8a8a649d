"""Klipper printers through Moonraker: JSON-RPC 2.0 over its websocket, files over HTTP.

One websocket per printer, opened on first use and reopened after it drops. On opening,
the driver identifies itself (``server.connection.identify`` with the API key), lists the
printer objects and subscribes (``printer.objects.subscribe``) to ``print_stats``,
``virtual_sdcard``, ``pause_resume``, ``extruder``, ``heater_bed``, ``webhooks`` and
every ``filament_switch_sensor``. Moonraker then pushes ``notify_status_update`` with the
changed fields, which keep a per-printer status cache current: ``state()`` answers from
that cache without a round trip. ``notify_klippy_ready`` triggers a fresh subscription
(Klipper restarted); ``notify_klippy_shutdown``/``notify_klippy_disconnected`` put the
printer in ``error``.

Intents map to Moonraker methods: ``printer.print.start {filename}``,
``printer.print.pause|resume|cancel``, ``printer.gcode.script`` (``M104``/``M140`` to heat
and cool down) and ``printer.objects.query`` (``printer_status`` refreshes the cache).
Klipper answers a pause, resume or cancel that does not apply with a console message
only ("Print is not paused, resume aborted") and an "ok", so the driver checks the cached
state first and raises ``DeviceRefused`` itself; a Klipper error reply ("SD busy",
"Unable to open file", "Requested temperature (…) out of range") is a ``DeviceRefused``
with Klipper's message. A refused API key, an unreachable host, a Klippy that is not
connected and every timeout are ``DeviceUnavailable``.

Names and numbers never become G-code of their own. Moonraker turns ``printer.print.start``
into ``SDCARD_PRINT_FILE FILENAME="<name>"`` escaping only ``"``, and Klipper runs every
line of a script, so a name with a line break would run the lines after it. ``print_start``
and ``upload`` therefore take only a plain file name (``kittylab.domain.file_names``: no
folder, quote, backslash, control character …), refused with ``DeviceRefused`` (``upload``:
``ValidationFailed`` on ``filename``) before anything is sent; heater targets go out as
digits (``heater_targets``), never as text from the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from kittylab import __version__
from kittylab.adapters.devices import heater_targets
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable, expand_connection
from kittylab.domain import file_names
from kittylab.domain.device_state import PrinterPhase, PrinterState, Temperature
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused

logger = logging.getLogger(__name__)
# websockets logs the handshake headers and frame contents at DEBUG, and both carry the
# API key (X-Api-Key, server.connection.identify). Its logger here never goes below INFO.
_wire_logger = logging.getLogger(f"{__name__}.wire")
_wire_logger.setLevel(logging.INFO)

SUBSCRIBED_OBJECTS = (
    "webhooks",
    "print_stats",
    "virtual_sdcard",
    "pause_resume",
    "extruder",
    "heater_bed",
)
RUNOUT_SENSOR_PREFIX = "filament_switch_sensor "
# A heater this far below its target while a job runs means the job waits for it (M109/M190).
HEATING_MARGIN_C = 3.0

_PHASES: Mapping[str, PrinterPhase] = {
    "standby": PrinterPhase.IDLE,
    "printing": PrinterPhase.PRINTING,
    "paused": PrinterPhase.PAUSED,
    "complete": PrinterPhase.COMPLETED,
    "cancelled": PrinterPhase.CANCELLED,
    "error": PrinterPhase.FAILED,
}


class _RpcError(Exception):
    """A JSON-RPC error reply from Moonraker (``{"code", "message"}``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Endpoint:
    base_url: str  # http(s)://host:port
    ws_url: str
    api_key: str | None = field(repr=False)
    label: str  # host:port, safe to show

    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key} if self.api_key else {}


def _endpoint(device: DeviceTarget) -> _Endpoint:
    connection = expand_connection(device.connection)
    url = connection.get("url")
    if not isinstance(url, str) or not url.strip():
        raise DeviceUnavailable(f"{device.external_id}: connection.url is not set")
    try:
        parsed = httpx.URL(url.strip().rstrip("/"))
    except httpx.InvalidURL as exc:
        raise DeviceUnavailable(f"{device.external_id}: connection.url is not a URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeviceUnavailable(f"{device.external_id}: connection.url must be http(s)://host:port")
    label = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
    base = str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
    ws = base.replace("http", "ws", 1).rstrip("/") + "/websocket"
    key = connection.get("api_key")
    return _Endpoint(base.rstrip("/"), ws, str(key) if key else None, label)


def normalize_status(
    status: Mapping[str, Mapping[str, Any]], klippy_state: str, klippy_message: str = ""
) -> PrinterState:
    """Moonraker's printer objects in KittyLab's ``PrinterState`` shape."""
    if klippy_state != "ready":
        first_line = klippy_message.strip().split("\n", 1)[0] if klippy_message else ""
        return {
            "state": PrinterPhase.ERROR.value,
            "failure": first_line or f"Klipper is {klippy_state}",
        }
    stats = status.get("print_stats", {})
    raw = str(stats.get("state") or "standby")
    phase = _PHASES.get(raw, PrinterPhase.ERROR)
    if phase is PrinterPhase.PRINTING and status.get("pause_resume", {}).get("is_paused"):
        phase = PrinterPhase.PAUSED  # a PAUSE being carried out
    out: PrinterState = {"state": phase.value}
    nozzle = _temperature(status.get("extruder"))
    bed = _temperature(status.get("heater_bed"))
    if phase is PrinterPhase.PRINTING and any(
        t is not None and t["target"] > 0 and t["actual"] < t["target"] - HEATING_MARGIN_C
        for t in (nozzle, bed)
    ):
        phase = PrinterPhase.HEATING
        out["state"] = phase.value
    if nozzle is not None:
        out["nozzle"] = nozzle
    if bed is not None:
        out["bed"] = bed
    if "filename" in stats:
        out["file"] = str(stats["filename"]) or None
    sdcard = status.get("virtual_sdcard", {})
    progress = sdcard.get("progress")
    if isinstance(progress, int | float):
        out["progress"] = round(float(progress), 4)
    if raw == "error":
        out["failure"] = str(stats.get("message") or "") or None
    sensors = [
        v
        for k, v in status.items()
        if k.startswith(RUNOUT_SENSOR_PREFIX) and v.get("enabled", True)
    ]
    if sensors:
        out["filament_present"] = all(bool(s.get("filament_detected")) for s in sensors)
    duration = stats.get("print_duration")
    if (
        phase is PrinterPhase.PRINTING
        and isinstance(progress, int | float)
        and isinstance(duration, int | float)
        and progress > 0.01
    ):
        # Moonraker clients' file-relative estimate: elapsed printing time over progress.
        out["seconds_left"] = round(max(0.0, duration / progress - duration), 1)
    return out


def _temperature(heater: Mapping[str, Any] | None) -> Temperature | None:
    if not heater or "temperature" not in heater:
        return None
    return {
        "actual": round(float(heater["temperature"]), 1),
        "target": float(heater.get("target") or 0.0),
    }


class _Session:
    """One websocket to one Moonraker: request/response matching and the status cache."""

    def __init__(self, endpoint: _Endpoint, ws: ClientConnection, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.status: dict[str, dict[str, Any]] = {}
        self.klippy_state = "disconnected"
        self.klippy_message = ""
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._on_result: dict[int, Callable[[Any], None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._reader = asyncio.create_task(self._read())

    @property
    def closed(self) -> bool:
        return self._closed

    def state(self) -> PrinterState:
        return normalize_status(self.status, self.klippy_state, self.klippy_message)

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send one request and wait for its reply. ``on_result`` runs in the reader as the
        reply arrives, before any later notification is applied, so a status snapshot can
        never overwrite a newer pushed change."""
        if self._closed:
            raise DeviceUnavailable(f"the connection to Moonraker at {self.endpoint.label} closed")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if on_result is not None:
            self._on_result[request_id] = on_result
        message = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = dict(params)
        try:
            async with asyncio.timeout(self.timeout):
                await self._ws.send(json.dumps(message))
                return await future
        except TimeoutError:
            raise DeviceUnavailable(
                f"Moonraker at {self.endpoint.label} did not answer {method} "
                f"within {self.timeout:g} s"
            ) from None
        except ConnectionClosed as exc:
            raise DeviceUnavailable(
                f"the connection to Moonraker at {self.endpoint.label} closed"
            ) from exc
        finally:
            self._pending.pop(request_id, None)
            self._on_result.pop(request_id, None)

    async def subscribe(self) -> None:
        listed = await self.call("printer.objects.list")
        available = listed.get("objects", []) if isinstance(listed, dict) else []
        names = list(SUBSCRIBED_OBJECTS)
        names += [str(o) for o in available if str(o).startswith(RUNOUT_SENSOR_PREFIX)]
        await self.call(
            "printer.objects.subscribe",
            {"objects": dict.fromkeys(names)},
            on_result=self._replace_status,
        )

    async def refresh(self) -> None:
        await self.call(
            "printer.objects.query",
            {"objects": dict.fromkeys(self.status or SUBSCRIBED_OBJECTS)},
            on_result=self._merge_status,
        )

    def _replace_status(self, result: Any) -> None:
        status = result.get("status", {}) if isinstance(result, dict) else {}
        self.status = {k: dict(v) for k, v in status.items() if isinstance(v, dict)}
        webhooks = self.status.get("webhooks", {})
        self.klippy_state = str(webhooks.get("state") or "ready")
        self.klippy_message = str(webhooks.get("state_message") or "")

    def _merge_status(self, result: Any) -> None:
        status = result.get("status", {}) if isinstance(result, dict) else {}
        for name, fields in status.items():
            if isinstance(fields, dict):
                self.status.setdefault(name, {}).update(fields)

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    logger.warning("moonraker %s sent a non-JSON frame", self.endpoint.label)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        except Exception:  # a malformed message must not leave requests hanging
            logger.exception("moonraker %s: reading the websocket failed", self.endpoint.label)
        finally:
            self._closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        DeviceUnavailable(
                            f"the connection to Moonraker at {self.endpoint.label} closed"
                        )
                    )

    def _dispatch(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        if request_id is not None:
            future = self._pending.get(request_id)
            if future is None or future.done():
                return
            error = message.get("error")
            if isinstance(error, dict):
                future.set_exception(
                    _RpcError(int(error.get("code") or 0), str(error.get("message") or ""))
                )
            else:
                result = message.get("result")
                apply = self._on_result.pop(request_id, None)
                if apply is not None:
                    apply(result)
                future.set_result(result)
            return
        method = message.get("method")
        params = message.get("params") or []
        if method == "notify_status_update" and params and isinstance(params[0], dict):
            for name, fields in params[0].items():
                if isinstance(fields, dict):
                    self.status.setdefault(name, {}).update(fields)
            webhooks = params[0].get("webhooks")
            if isinstance(webhooks, dict) and "state" in webhooks:
                self.klippy_state = str(webhooks["state"])
                self.klippy_message = str(webhooks.get("state_message") or "")
        elif method == "notify_klippy_ready":
            self.klippy_state = "ready"
            self._spawn(self._resubscribe())
        elif method == "notify_klippy_shutdown":
            self.klippy_state = "shutdown"
        elif method == "notify_klippy_disconnected":
            self.klippy_state = "disconnected"
            self.klippy_message = "Klipper is not connected to Moonraker"

    async def _resubscribe(self) -> None:
        try:
            await self.subscribe()
        except (DeviceUnavailable, _RpcError) as exc:
            logger.warning("moonraker %s: resubscribing failed: %s", self.endpoint.label, exc)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class MoonrakerDriver:
    """The ``moonraker`` integration: Klipper printers behind Moonraker.

    ``timeout`` bounds each JSON-RPC call and the websocket opening handshake;
    ``upload_timeout`` bounds one file upload. ``transport`` is httpx's seam for uploads.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        upload_timeout: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._upload_timeout = upload_timeout
        self._transport = transport
        self._sessions: dict[UUID, _Session] = {}
        self._locks: dict[UUID, asyncio.Lock] = {}
        self._http: httpx.AsyncClient | None = None

    async def send(self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]) -> None:
        if device.kind is not DeviceKind.PRINTER:
            raise DeviceRefused(
                f"{device.external_id}: the moonraker integration drives printers, "
                f"not {device.kind.value}s"
            )
        name = device.external_id
        # Checked before the connection is even opened: nothing of a bad request is sent.
        file = ""
        if intent == "print_start":
            file = file_names.refuse_unless_plain(payload.get("file"), name)
        script = ""
        if intent == "printer_heat":
            script = "\n".join(heater_targets.heat_lines(payload, name))
        session = await self._session(device)
        current = session.state()
        phase = PrinterPhase(current["state"])
        if intent == "print_start":
            if phase.busy:
                raise DeviceRefused(f"{name} is {phase.value}; finish or cancel the job first")
            await self._rpc(session, "printer.print.start", {"filename": file})
        elif intent == "print_pause":
            if phase not in (PrinterPhase.PRINTING, PrinterPhase.HEATING):
                raise DeviceRefused(f"{name} is {phase.value}, not printing; pause aborted")
            await self._rpc(session, "printer.print.pause")
        elif intent == "print_resume":
            if phase is not PrinterPhase.PAUSED:
                raise DeviceRefused(f"{name} is {phase.value}: print is not paused, resume aborted")
            await self._rpc(session, "printer.print.resume")
        elif intent == "print_cancel":
            if not phase.busy:
                raise DeviceRefused(f"{name} is {phase.value}; there is no job to cancel")
            await self._rpc(session, "printer.print.cancel")
        elif intent == "printer_status":
            await self._guard(session, session.refresh())
        elif intent == "printer_heat":
            await self._rpc(session, "printer.gcode.script", {"script": script})
        elif intent == "printer_cooldown":
            if phase in (PrinterPhase.PRINTING, PrinterPhase.HEATING):
                raise DeviceRefused(f"{name} is {phase.value}; pause or cancel before cooling down")
            await self._rpc(session, "printer.gcode.script", {"script": "M104 S0\nM140 S0"})
        else:
            raise DeviceRefused(f"{name}: the moonraker integration cannot {intent}")

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        session = await self._session(device)
        return dict(session.state())

    async def upload(self, device: DeviceTarget, filename: str, path: Path) -> None:
        """Store ``path`` in the printer's ``gcodes`` root as ``filename``, a plain file
        name (``ValidationFailed`` on ``filename`` otherwise, before any request)."""
        name = file_names.check(filename, "filename")
        endpoint = _endpoint(device)
        data = await asyncio.to_thread(path.read_bytes)
        form = {"root": "gcodes"}
        # Moonraker refuses a bad key as soon as the headers arrive and closes the
        # connection while the body is still being sent, which the client sees as a
        # broken connection; asking first makes a refused key a clear error.
        preflight = await self._http_call(endpoint, "GET", "/server/info")
        self._check_http(device, endpoint, preflight, "reach")
        response = await self._http_call(
            endpoint,
            "POST",
            "/server/files/upload",
            data=form,
            files={"file": (name, data, "application/octet-stream")},
            timeout=httpx.Timeout(self._upload_timeout, connect=self._timeout),
        )
        self._check_http(device, endpoint, response, "upload")

    async def _http_call(
        self, endpoint: _Endpoint, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client().request(
                method, f"{endpoint.base_url}{path}", headers=endpoint.headers(), **kwargs
            )
        except httpx.TimeoutException as exc:
            raise DeviceUnavailable(
                f"Moonraker at {endpoint.label} did not answer {method} {path} in time"
            ) from exc
        except httpx.HTTPError as exc:
            raise DeviceUnavailable(
                f"Moonraker at {endpoint.label} is unreachable ({type(exc).__name__})"
            ) from exc

    @staticmethod
    def _check_http(
        device: DeviceTarget, endpoint: _Endpoint, response: httpx.Response, action: str
    ) -> None:
        if response.status_code == 401:  # 403 is a refusal: "File is loaded, upload not permitted"
            raise DeviceUnavailable(f"Moonraker at {endpoint.label} rejected the API key")
        if response.status_code >= 500:
            raise DeviceUnavailable(
                f"Moonraker at {endpoint.label} failed to {action} ({response.status_code})"
            )
        if response.status_code >= 400:
            raise DeviceRefused(f"{device.external_id}: {_http_error_message(response)}")

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---- internals ----------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
        return self._http

    async def _session(self, device: DeviceTarget) -> _Session:
        endpoint = _endpoint(device)
        lock = self._locks.setdefault(device.id, asyncio.Lock())
        async with lock:
            session = self._sessions.get(device.id)
            if session is not None and not session.closed and session.endpoint == endpoint:
                return session
            if session is not None:
                await session.close()
                del self._sessions[device.id]
            session = await self._open(endpoint)
            self._sessions[device.id] = session
            return session

    async def _open(self, endpoint: _Endpoint) -> _Session:
        try:
            ws = await connect(
                endpoint.ws_url,
                additional_headers=endpoint.headers(),
                open_timeout=self._timeout,
                close_timeout=2.0,
                # A link that dies without a FIN (a pulled cable) is noticed within about
                # 20 s; the next call then reconnects instead of reading a stale cache.
                ping_interval=10.0,
                ping_timeout=10.0,
                max_size=16 * 1024 * 1024,
                logger=_wire_logger,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise DeviceUnavailable(
                f"Moonraker at {endpoint.label} is unreachable ({type(exc).__name__})"
            ) from exc
        logger.debug("moonraker %s: websocket open", endpoint.label)
        session = _Session(endpoint, ws, self._timeout)
        try:
            identify: dict[str, Any] = {
                "client_name": "KittyLab",
                "version": __version__,
                "type": "other",
                "url": "https://kittylab.invalid/",
            }
            if endpoint.api_key:
                identify["api_key"] = endpoint.api_key
            await self._guard(session, session.call("server.connection.identify", identify))
            info = await self._guard(session, session.call("server.info"))
            klippy_state = str(info.get("klippy_state") or "disconnected")
            if klippy_state == "ready":
                await self._guard(session, session.subscribe())
            else:
                session.klippy_state = klippy_state
                session.klippy_message = f"Klipper is {klippy_state}"
        except BaseException:
            await session.close()
            raise
        return session

    async def _rpc(
        self, session: _Session, method: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        return await self._guard(session, session.call(method, params))

    @staticmethod
    async def _guard(session: _Session, call: Any) -> Any:
        """Await ``call``, turning a Moonraker error reply into the project's errors."""
        try:
            return await call
        except _RpcError as exc:
            label = session.endpoint.label
            if _is_auth_failure(exc):
                raise DeviceUnavailable(f"Moonraker at {label} rejected the API key") from exc
            if exc.code in (503, 504):
                raise DeviceUnavailable(f"Moonraker at {label}: {exc.message}") from exc
            raise DeviceRefused(exc.message or f"Moonraker refused ({exc.code})") from exc


def _is_auth_failure(exc: _RpcError) -> bool:
    # Over JSON-RPC Moonraker reports its HTTP 401 as -32602 ("Invalid params"), so the
    # message tells an authentication failure from a malformed request.
    if exc.code == 401:
        return True
    text = exc.message.lower()
    return exc.code == -32602 and ("unauthorized" in text or "api key" in text)


_TORNADO_REASON = re.compile(r"HTTPError: HTTP \d+: [^(\n]*\((?P<reason>[^\n]*)\)\s*$")


def _http_error_message(response: httpx.Response) -> str:
    """Moonraker's reason for an HTTP error, never its traceback.

    Its upload handler puts only the status phrase ("Forbidden") in ``message``; the
    reason is in the last line of the traceback, ``HTTPError: HTTP 403: Forbidden
    (File is loaded, upload not permitted)``, and only that part is kept."""
    try:
        body = response.json()
    except ValueError:
        return f"Moonraker answered {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"Moonraker answered {response.status_code}"
    message = str(error.get("message") or "")
    match = _TORNADO_REASON.search(str(error.get("traceback") or ""))
    if match and (not message or message == response.reason_phrase):
        return match.group("reason")[:200]
    return message[:200] or f"Moonraker answered {response.status_code}"
