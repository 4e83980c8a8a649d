"""The ``octoprint`` integration: printers behind OctoPrint's REST API.

A device's ``connection`` mapping says where its OctoPrint is and how to reach the printer::

    url: http://octopi.lab.example        # OctoPrint's base URL (a path prefix is kept)
    api_key: ${OCTOPRINT_API_KEY}         # a user's or application key; expanded per call
    port: /dev/ttyACM0                    # optional: serial port to connect ("VIRTUAL" for
    baudrate: 115200                      #   the virtual printer); unset = OctoPrint's
    printer_profile: _default             #   preference, baudrate and profile likewise
    tool: tool0                           # optional: the extruder reported as ``nozzle``

Intents (payloads already validated by the command service):

- ``print_start {file}`` selects a file already in OctoPrint's local storage (put there
  with ``upload``) and starts it. ``file`` (and an uploaded file's name) must be a plain
  file name (``kittylab.domain.file_names``): anything else is refused before a request is
  made, and the name is percent-quoted as one URL path segment, so it can never reach
  another endpoint (``../../system/commands/…``) or a folder;
- ``print_pause``, ``print_resume``, ``print_cancel`` act on the current job (a resume
  sent while OctoPrint is still ``Pausing`` waits until it has paused: OctoPrint would
  accept and ignore it);
- ``printer_heat {nozzle?, bed?}`` sets heater targets; ``printer_cooldown`` sets both to 0
  and is refused while a job is printing (pause or cancel first), as the simulated
  printer refuses it;
- ``printer_status`` sends nothing: the state is read by ``state``.

Before ``print_start``, ``printer_heat`` and ``printer_cooldown`` the driver connects
OctoPrint to the printer when it is disconnected, and waits (``state_wait``) until it is
operational. A printer in an error state is not reconnected: that needs a person
(``DeviceRefused`` with OctoPrint's error). While OctoPrint answers but is not connected
to the printer, ``state`` reports ``disconnected`` (reachable, no job), not an error: the
device stays online, so the intents that connect it are not refused as "offline".

Errors: a refused connection, a timeout, a 401/403 (wrong key) or a 5xx raise
``DeviceUnavailable``; OctoPrint's 409s and other 4xx answers raise ``DeviceRefused`` with
the reason from its error body (a 400 "CSRF validation failed" is how OctoPrint answers a
POST whose key it does not accept: ``DeviceUnavailable`` too). Messages name the host,
never the key or URL credentials.

How OctoPrint's states map onto ``PrinterPhase``: ``octoprint_state.printer_state_from``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from kittylab.adapters.devices import heater_targets
from kittylab.adapters.devices.octoprint_state import (
    CLOSED_STATES,
    ERROR_STATES,
    dig,
    job_file,
    needs_last_print,
    printer_state_from,
    state_flags,
    still_connecting,
)
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable, expand_connection
from kittylab.domain import file_names
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused

INTEGRATION = "octoprint"

_REASON_LIMIT = 300

_JOB_COMMANDS: dict[str, dict[str, str]] = {
    "print_pause": {"command": "pause", "action": "pause"},
    "print_resume": {"command": "pause", "action": "resume"},
    "print_cancel": {"command": "cancel"},
}
_NEEDS_CONNECTION = frozenset({"print_start", "printer_heat", "printer_cooldown"})
INTENTS = frozenset({*_JOB_COMMANDS, *_NEEDS_CONNECTION, "printer_status"})


@dataclass(frozen=True)
class _Endpoint:
    """One device's OctoPrint, from its expanded connection mapping."""

    base: str
    host: str  # for messages: scheme, host and port only (no userinfo)
    path: str  # the base URL's path, for messages
    headers: dict[str, str]
    port: str | None
    baudrate: int | None
    printer_profile: str | None
    tool: str


class OctoPrintDriver:
    """``DeviceDriver`` and ``PrintFileUploader`` for OctoPrint.

    ``timeout`` bounds every HTTP exchange (connect, each read and write); ``state_wait``
    bounds a wait for OctoPrint to reach a state an intent needs (a disconnected printer
    operational, a pausing job paused); ``poll_interval`` is how often such a wait looks.
    ``transport`` replaces httpx's network transport. One driver serves any number of
    devices and OctoPrint servers; ``close`` ends it.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        state_wait: float = 30.0,
        poll_interval: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._state_wait = state_wait
        self._poll_interval = poll_interval
        # One connect at a time per OctoPrint: OctoPrint 1.11 checks "not connected" and
        # connects without a lock, so concurrent connect requests open the printer's
        # serial port several times over (seen under load in the tests).
        self._connecting: dict[str, asyncio.Lock] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )

    async def close(self) -> None:
        await self._client.aclose()

    # -- DeviceDriver -------------------------------------------------------------------

    async def send(self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]) -> None:
        _require_printer(device)
        if intent not in INTENTS:
            raise DeviceRefused(f"{device.external_id} (OctoPrint) cannot {intent}")
        if intent == "printer_status":
            return
        file = ""
        if intent == "print_start":
            # Checked before any request (even a connect): a bad name reaches nothing.
            file = file_names.refuse_unless_plain(payload.get("file"), device.external_id)
        endpoint = _endpoint(device)
        if intent in _NEEDS_CONNECTION:
            async with self._connecting.setdefault(endpoint.base, asyncio.Lock()):
                await self._ensure_operational(device, endpoint)
        if intent == "print_start":
            await self._start(device, endpoint, file)
        elif intent == "printer_heat":
            who = device.external_id
            nozzle = heater_targets.target(payload, "nozzle", who)
            bed = heater_targets.target(payload, "bed", who)
            await self._heat(device, endpoint, nozzle, bed)
        elif intent == "print_resume":
            await self._resume(device, endpoint)
        elif intent == "printer_cooldown":
            printer = await self._printer(endpoint)
            flags = state_flags(printer)
            if flags.get("printing") and not (flags.get("paused") or flags.get("pausing")):
                raise DeviceRefused(f"{device.external_id} is printing; pause or cancel first")
            await self._heat(device, endpoint, 0, 0)
        else:
            await self._post(device, endpoint, "/api/job", _JOB_COMMANDS[intent], intent)

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        _require_printer(device)
        endpoint = _endpoint(device)
        job, printer = await asyncio.gather(
            self._get(endpoint, "/api/job"), self._printer(endpoint)
        )
        last_ok: bool | None = None
        if needs_last_print(job, printer):
            last_ok = await self._last_print_succeeded(endpoint, job_file(job) or "")
        normalized = printer_state_from(job, printer, last_ok, tool=endpoint.tool)
        return dict(normalized)

    # -- PrintFileUploader --------------------------------------------------------------

    async def upload(self, device: DeviceTarget, filename: str, path: Path) -> None:
        _require_printer(device)
        file_names.check(filename, "filename")
        endpoint = _endpoint(device)
        with path.open("rb") as stream:
            response = await self._request(
                device,
                endpoint,
                "POST",
                "/api/files/local",
                f"upload {filename}",
                files={"file": (filename, stream, "application/octet-stream")},
                data={"select": "false", "print": "false"},
            )
        stored = dig(_json_object(response, endpoint), "files", "local", "path")
        if stored is not None and stored != filename:
            raise DeviceRefused(
                f"{device.external_id}: OctoPrint stored {filename!r} as {stored!r}; "
                "use a name it keeps as is"
            )

    # -- intents ------------------------------------------------------------------------

    async def _start(self, device: DeviceTarget, endpoint: _Endpoint, name: str) -> None:
        """Select and print ``name``, a plain file name (checked by ``send``)."""
        body = {"command": "select", "print": True}
        try:
            await self._post(device, endpoint, _file_url(name), body, "print_start", missing=True)
        except _Missing:
            raise DeviceRefused(f"{device.external_id}: no file {name!r} on OctoPrint") from None

    async def _heat(
        self, device: DeviceTarget, endpoint: _Endpoint, nozzle: float | None, bed: float | None
    ) -> None:
        if nozzle is not None:
            tool_body = {"command": "target", "targets": {endpoint.tool: nozzle}}
            await self._post(device, endpoint, "/api/printer/tool", tool_body, "printer_heat")
        if bed is not None:
            bed_body = {"command": "target", "target": bed}
            await self._post(device, endpoint, "/api/printer/bed", bed_body, "printer_heat")

    async def _ensure_operational(self, device: DeviceTarget, endpoint: _Endpoint) -> None:
        """Connect a disconnected printer and wait until it is operational."""
        job = await self._get(endpoint, "/api/job")
        text = str(job.get("state", ""))
        if text in ERROR_STATES:
            raise DeviceRefused(
                f"{device.external_id} is in error ({job.get('error') or text}); "
                "check it and reconnect it in OctoPrint"
            )
        if text in CLOSED_STATES:
            body: dict[str, Any] = {"command": "connect"}
            for key, value in (
                ("port", endpoint.port),
                ("baudrate", endpoint.baudrate),
                ("printerProfile", endpoint.printer_profile),
            ):
                if value is not None:
                    body[key] = value
            await self._post(device, endpoint, "/api/connection", body, "connect")
        elif not still_connecting(text):
            return
        job = await self._wait_while(endpoint, lambda t: t in CLOSED_STATES or still_connecting(t))
        text = str(job.get("state", ""))
        if text in ERROR_STATES:
            raise DeviceUnavailable(
                f"{device.external_id}: OctoPrint could not connect to the printer "
                f"({job.get('error') or text})"
            )
        if text in CLOSED_STATES or still_connecting(text):
            raise DeviceUnavailable(
                f"{device.external_id}: the printer did not connect within "
                f"{self._state_wait:g} s (OctoPrint says {text!r})"
            )

    async def _resume(self, device: DeviceTarget, endpoint: _Endpoint) -> None:
        # OctoPrint ignores a resume (and still answers 204) until a pause has finished,
        # so a resume sent while it is "Pausing" waits for "Paused" first.
        job = await self._wait_while(endpoint, lambda text: text == "Pausing", first_look=True)
        if job.get("state") == "Pausing":
            raise DeviceRefused(
                f"{device.external_id} is still pausing after {self._state_wait:g} s; "
                "resume it once it has paused"
            )
        await self._post(
            device, endpoint, "/api/job", _JOB_COMMANDS["print_resume"], "print_resume"
        )

    async def _wait_while(
        self, endpoint: _Endpoint, waiting: Callable[[str], bool], *, first_look: bool = False
    ) -> dict[str, Any]:
        """Poll ``/api/job`` while ``waiting(state text)``, for at most ``state_wait``;
        the last answer. ``first_look`` looks at once instead of after one interval."""
        deadline = time.monotonic() + self._state_wait
        if not first_look:
            await asyncio.sleep(self._poll_interval)
        while True:
            job = await self._get(endpoint, "/api/job")
            if not waiting(str(job.get("state", ""))) or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(self._poll_interval)

    # -- reading ------------------------------------------------------------------------

    async def _printer(self, endpoint: _Endpoint) -> dict[str, Any] | None:
        """``GET /api/printer``; None while the printer is not operational (OctoPrint's 409)."""
        response = await self._request(
            None, endpoint, "GET", "/api/printer?exclude=sd", "read the printer", accept=(409,)
        )
        return None if response.status_code == 409 else _json_object(response, endpoint)

    async def _last_print_succeeded(self, endpoint: _Endpoint, file: str) -> bool | None:
        """Whether the last print of ``file`` succeeded, per OctoPrint's print history of
        the file; None when it was never printed or is gone (or its path is one the driver
        will not put in a URL)."""
        path = _job_path_url(file)
        if path is None:
            return None
        try:
            info = await self._get(endpoint, path, missing=True)
        except _Missing:
            return None
        last = dig(info, "prints", "last", "success")
        return last if isinstance(last, bool) else None

    async def _get(
        self, endpoint: _Endpoint, path: str, *, missing: bool = False
    ) -> dict[str, Any]:
        response = await self._request(
            None, endpoint, "GET", path, "read the printer", missing=missing
        )
        return _json_object(response, endpoint)

    async def _post(
        self,
        device: DeviceTarget,
        endpoint: _Endpoint,
        path: str,
        body: Mapping[str, Any],
        action: str,
        *,
        missing: bool = False,
    ) -> None:
        await self._request(device, endpoint, "POST", path, action, json=body, missing=missing)

    async def _request(
        self,
        device: DeviceTarget | None,
        endpoint: _Endpoint,
        method: str,
        path: str,
        action: str,
        *,
        accept: tuple[int, ...] = (),
        missing: bool = False,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One exchange with OctoPrint, its failures translated (see the module docstring).

        Statuses in ``accept`` return. A 404 raises ``_Missing`` when the caller expects one
        (``missing``: a file that may not exist); anywhere else it means ``url`` is not
        OctoPrint's, which is ``DeviceUnavailable``.
        """
        try:
            response = await self._client.request(
                method,
                endpoint.base + path,
                headers=endpoint.headers,
                json=json,
                files=files,
                data=data,
            )
        except httpx.TimeoutException as exc:
            raise DeviceUnavailable(
                f"OctoPrint at {endpoint.host} did not answer within {self._timeout:g} s"
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DeviceUnavailable(
                f"OctoPrint at {endpoint.host} cannot be reached ({type(exc).__name__})"
            ) from exc
        status = response.status_code
        if status < 300 or status in accept:
            return response
        reason = _reason(response)
        # OctoPrint checks a request whose key it does not accept as a browser session:
        # without a CSRF token that is a 400, which here means the key was refused.
        if status in (401, 403) or (status == 400 and "CSRF" in reason):
            raise DeviceUnavailable(
                f"OctoPrint at {endpoint.host} refused the API key (HTTP {status})"
            )
        if status >= 500:
            raise DeviceUnavailable(
                f"OctoPrint at {endpoint.host} failed (HTTP {status}): {reason}"
            )
        if status == 404:
            if missing:
                raise _Missing(reason)
            raise DeviceUnavailable(
                f"{endpoint.host} has no OctoPrint API at {endpoint.path or '/'}"
            )
        who = device.external_id if device is not None else endpoint.host
        raise DeviceRefused(f"{who} refused to {action}: {reason}")


class _Missing(Exception):
    """OctoPrint answered 404 (internal: callers say what was missing)."""


def _file_url(name: str) -> str:
    """The API path of a plain file name (checked by the caller): one path segment, every
    character but letters, digits and ``_.-~`` percent-quoted."""
    return "/api/files/local/" + quote(name, safe="")


def _job_path_url(path: str) -> str | None:
    """The API path of the file OctoPrint says it printed, which may sit in a folder of its
    storage (started from its own UI): each segment quoted on its own; None for a path with
    an empty, ``.``, ``..`` or control-character segment, which is never looked up."""
    segments = path.strip("/").split("/")
    if any(s in ("", ".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in s) for s in segments):
        return None
    return "/api/files/local/" + "/".join(quote(s, safe="") for s in segments)


def _require_printer(device: DeviceTarget) -> None:
    if device.kind is not DeviceKind.PRINTER:
        raise DeviceRefused(
            f"{device.external_id} is a {device.kind.value}; OctoPrint drives printers"
        )


def _endpoint(device: DeviceTarget) -> _Endpoint:
    connection = expand_connection(device.connection)
    url = str(connection.get("url") or "").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeviceUnavailable(f"{device.external_id}: connection.url is not an http(s) URL")
    host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    api_key = connection.get("api_key")
    if not api_key:
        raise DeviceUnavailable(f"{device.external_id}: connection.api_key is not set")
    baudrate = connection.get("baudrate")
    return _Endpoint(
        base=url,
        host=host,
        path=parts.path,
        headers={"X-Api-Key": str(api_key)},
        port=str(connection["port"]) if connection.get("port") else None,
        baudrate=int(baudrate) if baudrate else None,
        printer_profile=(
            str(connection["printer_profile"]) if connection.get("printer_profile") else None
        ),
        tool=str(connection.get("tool") or "tool0"),
    )


def _json_object(response: httpx.Response, endpoint: _Endpoint) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise DeviceUnavailable(f"{endpoint.host} did not answer like OctoPrint's API")
    return body


def _reason(response: httpx.Response) -> str:
    """OctoPrint's error text: the ``error`` of its JSON body, else the body itself."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        reason = str(body["error"])
    else:
        reason = " ".join(response.text.split()) or response.reason_phrase
    return reason[:_REASON_LIMIT]
