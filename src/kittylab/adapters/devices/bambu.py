"""Bambu Lab printers in LAN mode: MQTT over TLS to the broker the printer runs itself.

Protocol (as documented by the OpenBambuAPI project and used by Home Assistant's Bambu
integrations):

- the printer listens on ``<host>:8883`` with TLS; its certificate is issued by the
  vendor's CA to ``CN=<serial>``, so verification needs the serial as server name (SNI);
- user ``bblp``, password the LAN access code shown on the printer;
- requests are JSON published to ``device/<serial>/request``:
  ``{"print": {"sequence_id": "7", "command": "pause", "param": ""}}``; the printer echoes
  each request on ``device/<serial>/report`` with the same ``sequence_id`` and
  ``"result": "success"`` or ``"fail"`` (and a ``reason``);
- status arrives on the same topic as ``{"print": {"command": "push_status", ...}}``. X1
  printers send the whole object, P1/A1 printers only the keys that changed, so the driver
  merges every report into one cached object; ``{"pushing": {"command": "pushall"}}`` asks
  for the whole object, which the driver does once per connection (the vendor advises
  against doing it often on P1 printers).

One MQTT connection per printer stays open between calls: it keeps the merged status fresh
and lets ``send`` match the printer's reply to its request. A dropped connection is
reopened by the next call. Message shapes and state mapping live in ``bambu_protocol``;
uploads (implicit FTPS) in ``bambu_ftps``.

Connection mapping of a device (``DeviceTarget.connection``)::

    host: 192.168.1.40
    port: 8883                       # optional, default 8883
    serial: 01S00A123456789
    access_code: ${BAMBU_ACCESS_CODE}
    ca_file: /etc/kittylab/bambu-ca.pem   # the vendor CA; verified against the serial
    insecure_tls: true               # or: accept the printer's certificate unverified
    ftps_port: 990                   # optional: where uploads go (implicit FTPS)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from kittylab.adapters.devices import bambu_ftps
from kittylab.adapters.devices.bambu_protocol import (
    CANCELLED_ERROR,
    DEFAULT_GCODE_ROOT,
    USERNAME,
    error_code,
    format_error,
    merge_report,
    normalize,
    request_for,
)
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable, expand_connection
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused

log = logging.getLogger(__name__)

DEFAULT_PORT = 8883
DEFAULT_FTPS_PORT = 990  # implicit FTPS: TLS from the first byte


# --- connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class BambuConnection:
    """A printer's expanded connection settings. ``access_code`` never appears in repr."""

    host: str
    port: int
    serial: str
    access_code: str = field(repr=False)
    ca_file: str | None = None
    insecure_tls: bool = False
    ftps_port: int = DEFAULT_FTPS_PORT

    @classmethod
    def from_device(cls, device: DeviceTarget) -> BambuConnection:
        """Parse (after ``${ENV}`` expansion) the device's connection mapping;
        ``DeviceUnavailable`` naming the key for a missing or malformed one."""
        raw = expand_connection(device.connection)
        who = device.external_id

        def optional(key: str) -> str | None:
            value = raw.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise DeviceUnavailable(f"{who}: connection.{key} must be a string")
            return str(value).strip()

        def required(key: str) -> str:
            value = optional(key)
            if value is None:
                raise DeviceUnavailable(f"{who}: connection.{key} is not set")
            return value

        host, serial, code = required("host"), required("serial"), required("access_code")
        if any(c in serial for c in "/#+ "):
            raise DeviceUnavailable(f"{who}: connection.serial must not contain '/#+ '")

        def port_number(key: str, default: int) -> int:
            value = raw.get(key, default)
            if isinstance(value, bool):
                raise DeviceUnavailable(f"{who}: connection.{key} must be a number")
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise DeviceUnavailable(f"{who}: connection.{key} must be a number") from None
            if not 0 < number < 65536:
                raise DeviceUnavailable(f"{who}: connection.{key} must be 1-65535")
            return number

        port = port_number("port", DEFAULT_PORT)
        ftps_port = port_number("ftps_port", DEFAULT_FTPS_PORT)
        insecure = raw.get("insecure_tls", False)
        if not isinstance(insecure, bool):
            raise DeviceUnavailable(f"{who}: connection.insecure_tls must be true or false")
        return cls(host, port, serial, code, optional("ca_file"), insecure, ftps_port)

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    @property
    def request_topic(self) -> str:
        return f"device/{self.serial}/request"

    def describe(self) -> str:
        return f"Bambu printer {self.serial} at {self.host}:{self.port}"


class _PrinterTLSContext(ssl.SSLContext):
    """Verifies the printer's certificate against the serial it was issued to, whatever
    address the printer is reached at (the MQTT client would otherwise check the IP)."""

    server_name: str = ""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )


def tls_context(conn: BambuConnection) -> ssl.SSLContext:
    """Verified TLS (the CA in ``ca_file``, or the system's, and the serial as name), or
    encryption without verification when the device says ``insecure_tls: true``."""
    if conn.insecure_tls:
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        return insecure
    context = _PrinterTLSContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = conn.serial
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    # The printer's certificate names the serial in its subject only, and the vendor CA
    # lacks extensions that strict X.509 checking demands.
    context.hostname_checks_common_name = True
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    try:
        if conn.ca_file:
            context.load_verify_locations(cafile=conn.ca_file)
        else:
            context.load_default_certs()
    except (OSError, ssl.SSLError) as exc:
        raise DeviceUnavailable(
            f"{conn.describe()}: cannot read the CA file {conn.ca_file}"
        ) from exc
    return context


def _is_auth_failure(exc: aiomqtt.MqttCodeError) -> bool:
    rc = exc.rc
    value = rc.value if isinstance(rc, ReasonCode) else rc
    # MQTT 3.1.1 CONNACK 4/5, or their MQTT 5 reason codes 134/135.
    return value in (4, 5, 134, 135)


def _connect_error(conn: BambuConnection, exc: BaseException) -> DeviceUnavailable:
    """An operator-safe explanation of a failed connection (no access code in it)."""
    where = conn.describe()
    if isinstance(exc, aiomqtt.MqttCodeError) and _is_auth_failure(exc):
        return DeviceUnavailable(f"{where} refused the LAN access code")
    text = str(exc)
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return DeviceUnavailable(f"{where} did not answer in time")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
        hint = "" if conn.ca_file else " (set ca_file to the vendor CA, or insecure_tls: true)"
        return DeviceUnavailable(f"{where}: TLS certificate not trusted{hint}: {text}")
    return DeviceUnavailable(f"{where} is unreachable: {text}")


# --- the per-printer session ---------------------------------------------------------


class _Session:
    """One open MQTT connection to one printer and the state it has reported."""

    def __init__(self, conn: BambuConnection, client: aiomqtt.Client) -> None:
        self.conn = conn
        self.client = client
        self.report: dict[str, Any] = {}
        self.changed = asyncio.Event()
        self.pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self.error: DeviceUnavailable | None = None
        self.reader: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.error is None and self.reader is not None and not self.reader.done()

    @property
    def has_status(self) -> bool:
        return "gcode_state" in self.report

    async def read(self) -> None:
        """Consume reports until the connection ends; then fail whatever waits."""
        try:
            async for message in self.client.messages:
                self._handle(message.payload)
        except aiomqtt.MqttError as exc:
            self._die(DeviceUnavailable(f"{self.conn.describe()}: connection lost ({exc})"))
        except asyncio.CancelledError:
            self._die(DeviceUnavailable(f"{self.conn.describe()}: connection closed"))
            raise
        else:
            self._die(DeviceUnavailable(f"{self.conn.describe()}: connection closed"))

    def _die(self, error: DeviceUnavailable) -> None:
        self.error = error
        for _, waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.pending.clear()
        self.changed.set()

    def _handle(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            log.debug("ignoring a non-JSON report from %s", self.conn.serial)
            return
        if not isinstance(message, dict):
            return
        for family, body in message.items():
            if not isinstance(body, dict):
                continue
            command = body.get("command")
            if family == "print" and command in (None, "push_status"):
                merge_report(self.report, body)
                self.changed.set()
                continue
            entry = self.pending.get(str(body.get("sequence_id")))
            if entry is not None and entry[0] == command and not entry[1].done():
                entry[1].set_result(body)

    async def wait_for_status(self, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not self.has_status:
                if self.error is not None:
                    raise self.error
                self.changed.clear()
                await self.changed.wait()


@dataclass
class _Entry:
    conn: BambuConnection
    session: _Session
    stack: contextlib.AsyncExitStack


class BambuDriver:
    """``DeviceDriver`` and ``PrintFileUploader`` for Bambu Lab printers in LAN mode (MQTT
    over TLS for commands and status, implicit FTPS for files).

    ``timeout`` bounds every network step (TCP connect, TLS handshake, CONNACK,
    subscribe, publish acknowledgement, first status report). ``reply_timeout`` is how long
    ``send`` waits for the printer's echo of a request: a ``fail`` echo raises
    ``DeviceRefused``; no echo in time means the printer's own broker accepted the request
    (QoS 1) but said nothing more, and ``send`` returns — confirmation by state is the
    command service's job. ``gcode_root`` is where ``.gcode`` files live on the printer:
    ``print_start`` names a plain file (``kittylab.domain.file_names``), a project at the
    card's root or G-code under ``gcode_root``, never a path."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        reply_timeout: float = 5.0,
        keepalive: int = 30,
        gcode_root: str = DEFAULT_GCODE_ROOT,
    ) -> None:
        self._timeout = timeout
        self._reply_timeout = reply_timeout
        self._keepalive = keepalive
        self._gcode_root = gcode_root.rstrip("/")
        # Connections belong to the event loop that opened them, so they are kept per loop:
        # a process normally runs one, but tests and one-shot commands run several.
        self._entries: dict[tuple[asyncio.AbstractEventLoop, UUID], _Entry] = {}
        self._locks: dict[tuple[asyncio.AbstractEventLoop, UUID], asyncio.Lock] = {}
        self._sequence = itertools.count(1)

    async def send(self, device: DeviceTarget, intent: str, payload: Mapping[str, Any]) -> None:
        if device.kind is not DeviceKind.PRINTER:
            raise DeviceRefused(f"{device.external_id}: the bambu integration drives printers")
        request = request_for(intent, payload, self._gcode_root, device.external_id)
        session = await self._session(device)
        sequence_id = str(next(self._sequence))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        session.pending[sequence_id] = (request.command, waiter)
        try:
            try:
                await session.client.publish(
                    session.conn.request_topic,
                    json.dumps(request.payload(sequence_id)),
                    qos=1,
                    timeout=self._timeout,
                )
            except aiomqtt.MqttError as exc:
                raise _connect_error(session.conn, exc) from exc
            if not request.echoed:
                return
            try:
                reply = await asyncio.wait_for(waiter, self._reply_timeout)
            except TimeoutError:
                log.info(
                    "%s sent no reply to %s #%s within %.1f s",
                    session.conn.describe(),
                    request.command,
                    sequence_id,
                    self._reply_timeout,
                )
                return
        finally:
            session.pending.pop(sequence_id, None)
        _raise_if_refused(session.conn, request.command, reply)

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        if device.kind is not DeviceKind.PRINTER:
            raise DeviceRefused(f"{device.external_id}: the bambu integration drives printers")
        session = await self._session(device)
        return dict(normalize(session.report))

    async def upload(self, device: DeviceTarget, filename: str, path: Path) -> None:
        """``PrintFileUploader``: put ``path`` on the printer's card as ``filename`` over
        implicit FTPS (``connection.ftps_port``, default 990), without starting it."""
        if device.kind is not DeviceKind.PRINTER:
            raise DeviceRefused(f"{device.external_id}: the bambu integration drives printers")
        conn = BambuConnection.from_device(device)
        await bambu_ftps.upload(
            host=conn.host,
            port=conn.ftps_port,
            serial=conn.serial,
            access_code=conn.access_code,
            context=tls_context(conn),
            filename=filename,
            path=path,
            socket_timeout=self._timeout,
        )

    async def close(self) -> None:
        """Close this loop's connections; those of a loop that has ended are dropped."""
        loop = asyncio.get_running_loop()
        mine = [key for key in self._entries if key[0] is loop or key[0].is_closed()]
        for key in mine:
            entry = self._entries.pop(key)
            self._locks.pop(key, None)
            if key[0] is loop:
                await self._close_entry(entry)

    async def _session(self, device: DeviceTarget) -> _Session:
        """The open session of this device, opening (or reopening) it when needed."""
        conn = BambuConnection.from_device(device)
        loop = asyncio.get_running_loop()
        for stale in [key for key in self._entries if key[0].is_closed()]:
            # Nothing can be awaited on a closed loop: dropping the entry lets its socket go.
            del self._entries[stale]
            self._locks.pop(stale, None)
        key = (loop, device.id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and entry.session.alive and entry.conn == conn:
                return entry.session
            if entry is not None:
                del self._entries[key]
                await self._close_entry(entry)
            entry = await self._open(conn)
            self._entries[key] = entry
            return entry.session

    async def _open(self, conn: BambuConnection) -> _Entry:
        context = tls_context(conn)
        client = aiomqtt.Client(
            conn.host,
            conn.port,
            username=USERNAME,
            password=conn.access_code,
            identifier=f"kittylab-{secrets.token_hex(6)}",
            tls_context=context,
            tls_insecure=conn.insecure_tls,
            timeout=self._timeout,
            keepalive=self._keepalive,
            # Requests are tiny; without this a pause waits for Nagle's delayed ACK.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # paho's own socket timeout (TCP connect and TLS handshake run in a worker thread);
        # the outer asyncio timeout below is only a backstop.
        client._client.connect_timeout = self._timeout
        stack = contextlib.AsyncExitStack()
        try:
            await asyncio.wait_for(stack.enter_async_context(client), self._timeout * 3)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            await stack.aclose()
            raise _connect_error(conn, exc) from exc
        session = _Session(conn, client)
        entry = _Entry(conn, session, stack)
        try:
            await client.subscribe(conn.report_topic, qos=1, timeout=self._timeout)
            session.reader = asyncio.create_task(session.read(), name=f"bambu-{conn.serial}")
            pushall = request_for("printer_status", {}, self._gcode_root)
            await client.publish(
                conn.request_topic,
                json.dumps(pushall.payload(str(next(self._sequence)))),
                qos=1,
                timeout=self._timeout,
            )
            await session.wait_for_status(self._timeout)
        except DeviceUnavailable:
            await self._close_entry(entry)
            raise
        except (aiomqtt.MqttError, TimeoutError) as exc:
            await self._close_entry(entry)
            if isinstance(exc, TimeoutError):
                raise DeviceUnavailable(
                    f"{conn.describe()} sent no status report within {self._timeout:g} s"
                ) from exc
            raise _connect_error(conn, exc) from exc
        log.info("connected to %s", conn.describe())
        return entry

    async def _close_entry(self, entry: _Entry) -> None:
        reader = entry.session.reader
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        try:
            await asyncio.wait_for(entry.stack.aclose(), self._timeout)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            log.debug("closing %s: %s", entry.conn.describe(), exc)


def _raise_if_refused(conn: BambuConnection, command: str, reply: Mapping[str, Any]) -> None:
    result = str(reply.get("result", "")).lower()
    code = error_code(reply.get("print_error"))
    if result == "fail" or (code and code != CANCELLED_ERROR):
        reason = str(reply.get("reason") or "").strip()
        if not reason and code:
            reason = f"print error {format_error(code)}"
        raise DeviceRefused(
            f"printer {conn.serial} refused {command}" + (f": {reason}" if reason else "")
        )
