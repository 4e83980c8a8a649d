"""A protocol-level Bambu Lab printer (LAN mode) for contract tests.

The real printer runs its own MQTT broker; here the TLS Mosquitto from ``tls_mosquitto``
stands in for that broker and this peer plays the printer's side of it: it subscribes to
``device/<serial>/request``, carries out ``print`` requests (``pause``, ``resume``,
``stop``, ``gcode_line``, ``gcode_file``, ``project_file``) and ``pushing.pushall``,
echoes every request with its ``sequence_id`` and ``result`` ``success`` or ``fail``, and
publishes ``push_status`` reports on ``device/<serial>/report``: the whole object after a
``pushall``, otherwise only the keys that changed (as P1 and A1 printers do).

It simulates ``gcode_state`` (IDLE → PREPARE → RUNNING ⇄ PAUSE → FINISH, FAILED with
``print_error`` 0x0300400C when stopped), heating towards targets, ``mc_percent`` and
``mc_remaining_time``. Requests a real printer could not carry out in its state (pausing
while idle, starting while busy, a file that is not on its card) get ``result: fail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import aiomqtt

CANCELLED_ERROR = 0x0300400C
AMBIENT = 25.0
BUSY = ("PREPARE", "RUNNING", "PAUSE")
_TEMPERATURE_GCODE = re.compile(r"^(M104|M140|M109|M190)\s+S(\d+(?:\.\d+)?)", re.IGNORECASE)


class BambuPrinterPeer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        ca_file: Path,
        serial: str,
        access_code: str,
        files: tuple[str, ...] = ("cube.3mf", "/sdcard/benchy.gcode"),
        tick_seconds: float = 0.05,
        heat_share: float = 0.35,
        print_seconds: float = 60.0,
    ) -> None:
        self.host, self.port, self.ca_file = host, port, ca_file
        self.serial = serial
        self.access_code = access_code
        self.files = set(files)
        self.tick_seconds = tick_seconds
        self.heat_share = heat_share  # share of the gap to the target closed per tick
        self.print_seconds = print_seconds
        self.running = True  # False freezes time: no heating, no progress
        self.silent_commands: set[str] = set()  # carried out without an echo
        self.requests: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {
            "command": "push_status",
            "msg": 0,
            "gcode_state": "IDLE",
            "gcode_file": "",
            "subtask_name": "",
            "mc_percent": 0,
            "mc_remaining_time": 0,
            "mc_print_stage": "1",
            "nozzle_temper": AMBIENT,
            "nozzle_target_temper": 0.0,
            "bed_temper": AMBIENT,
            "bed_target_temper": 0.0,
            "chamber_temper": AMBIENT,
            "print_error": 0,
            "fail_reason": "0",
            "wifi_signal": "-45dBm",
            "spd_lvl": 2,
            "lights_report": [{"node": "chamber_light", "mode": "on"}],
            "upload": {"status": "idle", "progress": 0, "message": "Good"},
        }
        self._published: dict[str, Any] = {}
        self._report_sequence = 2000
        self._client: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    @property
    def request_topic(self) -> str:
        return f"device/{self.serial}/request"

    async def __aenter__(self) -> Self:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False  # the broker's certificate names the serial, not an IP
        client = aiomqtt.Client(
            self.host,
            self.port,
            username="bblp",
            password=self.access_code,
            identifier=f"printer-{self.serial}",
            tls_context=context,
            tls_insecure=True,
            timeout=5,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client = await self._stack.enter_async_context(client)
        await client.subscribe(self.request_topic, qos=1)
        self._tasks = [
            asyncio.create_task(self._serve(), name="bambu-peer-serve"),
            asyncio.create_task(self._tick(), name="bambu-peer-tick"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()

    # --- what the tests can do to the printer ----------------------------------------

    async def publish_raw(self, message: Mapping[str, Any]) -> None:
        """Publish any report as the printer, e.g. a hand-made partial ``push_status``."""
        assert self._client is not None
        self.reports.append(dict(message))
        await self._client.publish(self.report_topic, json.dumps(message), qos=1)

    async def fail_print(self, code: int) -> None:
        """End the running job with firmware error ``code`` (a clog, a detached part)."""
        self._end_job("FAILED", code)
        await self._push_changes()

    def requests_for(self, command: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("command") == command]

    # --- the printer ----------------------------------------------------------------

    async def _serve(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            try:
                request = json.loads(message.payload)  # type: ignore[arg-type]
            except ValueError:
                continue
            for family, body in request.items():
                if isinstance(body, dict):
                    await self._handle(family, body)

    async def _handle(self, family: str, body: dict[str, Any]) -> None:
        self.requests.append({"family": family, **body})
        command = str(body.get("command"))
        if family == "pushing" and command == "pushall":
            await self._push_all()
            return
        if family != "print":
            await self._echo(family, body, "unsupported request")
            return
        handler = {
            "pause": self._pause,
            "resume": self._resume,
            "stop": self._stop,
            "gcode_line": self._gcode_line,
            "gcode_file": self._gcode_file,
            "project_file": self._project_file,
        }.get(command)
        reason = handler(body) if handler else f"unknown command {command}"
        if command not in self.silent_commands:
            await self._echo(family, body, reason)
        await self._push_changes()

    async def _echo(self, family: str, body: dict[str, Any], reason: str | None) -> None:
        reply = {**body, "result": "fail" if reason else "success", "reason": reason or ""}
        await self.publish_raw({family: reply})

    def _pause(self, _: Mapping[str, Any]) -> str | None:
        if self.status["gcode_state"] not in ("PREPARE", "RUNNING"):
            return f"cannot pause: printer is {self.status['gcode_state']}"
        self.status["gcode_state"] = "PAUSE"
        return None

    def _resume(self, _: Mapping[str, Any]) -> str | None:
        if self.status["gcode_state"] != "PAUSE":
            return f"cannot resume: printer is {self.status['gcode_state']}"
        self.status["gcode_state"] = "RUNNING" if self._at_temperature() else "PREPARE"
        return None

    def _stop(self, _: Mapping[str, Any]) -> str | None:
        if self.status["gcode_state"] not in BUSY:
            return f"cannot stop: printer is {self.status['gcode_state']}"
        self._end_job("FAILED", CANCELLED_ERROR)
        return None

    def _gcode_line(self, body: Mapping[str, Any]) -> str | None:
        for line in str(body.get("param", "")).splitlines():
            match = _TEMPERATURE_GCODE.match(line.strip())
            if match is None:
                continue
            key = (
                "nozzle_target_temper"
                if match[1].upper() in ("M104", "M109")
                else "bed_target_temper"
            )
            self.status[key] = float(match[2])
        return None

    def _gcode_file(self, body: Mapping[str, Any]) -> str | None:
        path = str(body.get("param", ""))
        return self._start(path, path, path.rsplit("/", 1)[-1])

    def _project_file(self, body: Mapping[str, Any]) -> str | None:
        url = str(body.get("url", ""))
        name = str(body.get("file") or url.rsplit("/", 1)[-1])
        # The firmware runs the plate inside the project and reports the sender's task name.
        plate = f"/data/{body.get('param', '')}"
        return self._start(name, plate, str(body.get("subtask_name", "")))

    def _start(self, name: str, gcode_file: str, subtask_name: str) -> str | None:
        if self.status["gcode_state"] in BUSY:
            return f"printer is busy ({self.status['gcode_state']})"
        if name not in self.files:
            return f"file not found: {name}"
        self.status.update(
            gcode_state="PREPARE",
            gcode_file=gcode_file,
            subtask_name=subtask_name,
            mc_percent=0,
            mc_remaining_time=round(self.print_seconds / 60),
            print_error=0,
            fail_reason="0",
            nozzle_target_temper=220.0,
            bed_target_temper=55.0,
        )
        return None

    def _end_job(self, gcode_state: str, code: int) -> None:
        self.status.update(
            gcode_state=gcode_state,
            print_error=code,
            fail_reason=str(code),
            nozzle_target_temper=0.0,
            bed_target_temper=0.0,
            mc_remaining_time=0,
        )

    def _at_temperature(self) -> bool:
        s = self.status
        return (
            s["nozzle_temper"] >= s["nozzle_target_temper"] - 3
            and s["bed_temper"] >= s["bed_target_temper"] - 3
        )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            if not self.running:
                continue
            s = self.status
            for actual, target in (
                ("nozzle_temper", "nozzle_target_temper"),
                ("bed_temper", "bed_target_temper"),
            ):
                goal = s[target] or AMBIENT
                s[actual] = round(s[actual] + (goal - s[actual]) * self.heat_share, 1)
            if s["gcode_state"] == "PREPARE" and self._at_temperature():
                s["gcode_state"] = "RUNNING"
            elif s["gcode_state"] == "RUNNING":
                step = 100 * self.tick_seconds / self.print_seconds
                percent = min(100.0, float(s.get("_percent", s["mc_percent"])) + step)
                s["_percent"] = percent
                s["mc_percent"] = int(percent)
                s["mc_remaining_time"] = round((100 - percent) * self.print_seconds / 6000)
                if percent >= 100:
                    s.pop("_percent")
                    self._end_job("FINISH", 0)
            await self._push_changes()

    def _public_status(self) -> dict[str, Any]:
        return {k: v for k, v in self.status.items() if not k.startswith("_")}

    async def _push_all(self) -> None:
        full = self._public_status()
        self._published = json.loads(json.dumps(full))
        await self.publish_raw({"print": {**full, "sequence_id": self._next_report_id()}})

    async def _push_changes(self) -> None:
        current = self._public_status()
        changed = {k: v for k, v in current.items() if self._published.get(k) != v}
        if not changed:
            return
        self._published.update(json.loads(json.dumps(changed)))
        await self.publish_raw(
            {
                "print": {
                    **changed,
                    "command": "push_status",
                    "msg": 1,
                    "sequence_id": self._next_report_id(),
                }
            }
        )

    def _next_report_id(self) -> str:
        self._report_sequence += 1
        return str(self._report_sequence)
