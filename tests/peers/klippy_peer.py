"""A protocol-level Klippy host for running the real Moonraker in tests.

Klippy (Klipper's host process) needs a printer's micro-controller to become ready, and
neither the firmware nor a simulator of it can run here. This peer takes Klippy's place on
its unix socket and speaks Klippy's API server protocol as Moonraker uses it: JSON
objects terminated by ``0x03``, requests ``{id, method, params}``, replies
``{id, result}`` or ``{id, error: {error: "WebRequestError", message}}``, and pushes
``{...response_template, params}`` to subscribers (status every 0.25 s, changed fields
only; G-code output as ``{response}``).

Behind the protocol is a small printer that behaves as Klipper's modules do:
``print_stats`` (standby → printing → paused/complete/cancelled/error),
``virtual_sdcard`` (prints a file from the G-code folder Moonraker manages, line by line,
waiting on M109/M190), ``pause_resume`` (with Klipper's quirks: ``RESUME`` when not paused
only answers "Print is not paused, resume aborted"; ``PAUSE`` when idle sets the flag),
heaters with range checks ("Requested temperature (…) out of range (…)") and a filament
runout switch. The test drives faults through ``fail_print``, ``set_filament`` and
``shutdown``.

It runs on its own event loop in a thread, so synchronous fixtures can own it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFRESH_SECONDS = 0.25  # Klippy's SUBSCRIPTION_REFRESH_TIME
TICK_SECONDS = 0.05
AMBIENT_C = 25.0


class GCodeError(Exception):
    """What Klipper raises as ``gcode.error``: the request fails with this message."""


@dataclass
class Heater:
    name: str
    max_temp: float
    temperature: float = AMBIENT_C
    target: float = 0.0

    def set_target(self, value: float) -> None:
        if value and not 0.0 <= value <= self.max_temp:
            raise GCodeError(
                f"Requested temperature ({value:.1f}) out of range (0.0:{self.max_temp:.1f})"
            )
        self.target = value

    def step(self, seconds: float, rate: float) -> None:
        goal = self.target or AMBIENT_C
        delta = goal - self.temperature
        change = max(-rate * seconds, min(rate * seconds, delta))
        self.temperature += change

    def reached(self) -> bool:
        return self.temperature >= self.target - 1.0

    def status(self) -> dict[str, Any]:
        return {
            "temperature": round(self.temperature, 2),
            "target": self.target,
            "power": 1.0 if self.temperature < self.target else 0.0,
        }


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    subscription: dict[str, list[str] | None] | None = None
    template: dict[str, Any] = field(default_factory=dict)
    last_sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_template: dict[str, Any] | None = None


class KlippyPeer:
    def __init__(
        self,
        socket_path: Path,
        gcodes_dir: Path,
        *,
        heat_rate: float = 400.0,
        bytes_per_second: float = 2000.0,
    ) -> None:
        self.socket_path = socket_path
        self.gcodes_dir = gcodes_dir
        self.heat_rate = heat_rate
        self.bytes_per_second = bytes_per_second
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (method, params) received
        self.scripts: list[str] = []  # every G-code script run through gcode/script
        self._clients: list[_Client] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._push_cycles = 0
        self._reset_printer()

    # ---- lifecycle (called from the test's thread) -------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Back to an idle, cold printer with filament loaded; forget recorded requests."""

        async def do() -> None:
            self._reset_printer()
            self.requests.clear()
            self.scripts.clear()

        self._call(do())

    def fail_print(self, message: str) -> None:
        """Stop the running job on an error, as a failed SD print does in Klipper."""

        async def do() -> None:
            if self.print_state in ("printing", "paused"):
                self._finish("error", message)

        self._call(do())

    def set_filament(self, present: bool) -> None:
        async def do() -> None:
            self.filament_detected = present

        self._call(do())

    def shutdown(self, message: str) -> None:
        """Klippy's emergency shutdown: webhooks state ``shutdown``; a running job errors."""

        async def do() -> None:
            self._shutdown(message)

        self._call(do())

    def restart(self) -> None:
        """Klipper's RESTART: the host process drops its API connections and comes back
        with a fresh, idle printer; Moonraker reconnects and announces it ready."""

        async def do() -> None:
            self._reset_printer()
            for client in list(self._clients):
                client.writer.close()

        self._call(do())

    def settle(self) -> None:
        """Return once the current state has been pushed to subscribers (Moonraker), so
        Moonraker's own view (e.g. whether a file is loaded) has caught up."""
        target = self._push_cycles + 2
        deadline = time.monotonic() + 5
        while self._push_cycles < target:
            if time.monotonic() > deadline:
                raise RuntimeError("the Klippy peer stopped pushing status")
            time.sleep(0.02)

    def count(self, method: str) -> int:
        return sum(1 for m, _ in list(self.requests) if m == method)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        if self.socket_path.exists():
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        self._ticker = asyncio.create_task(self._tick_forever())

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for client in list(self._clients):
            client.writer.close()
        if self._server is not None:
            self._server.close()

    # ---- printer model --------------------------------------------------------------------

    def _reset_printer(self) -> None:
        self.klippy_state = "ready"
        self.state_message = "Printer is ready"
        self.extruder = Heater("extruder", max_temp=300.0)
        self.heater_bed = Heater("heater_bed", max_temp=130.0)
        self.filament_detected = True
        self.print_state = "standby"
        self.print_message = ""
        self.filename = ""
        self.is_paused = False
        self.sd_paused = False
        self.file_path: Path | None = None
        self.file_lines: list[str] = []
        self.line_index = 0
        self.file_position = 0
        self.file_size = 0
        self.sd_active = False
        self.print_started: float | None = None
        self.print_duration = 0.0
        self._byte_budget = 0.0

    def _objects(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {
            "webhooks": lambda: {"state": self.klippy_state, "state_message": self.state_message},
            "configfile": self._configfile,
            "print_stats": lambda: {
                "filename": self.filename,
                "total_duration": self.print_duration,
                "print_duration": self.print_duration,
                "filament_used": 0.0,
                "state": self.print_state,
                "message": self.print_message,
                "info": {"total_layer": None, "current_layer": None},
            },
            "virtual_sdcard": lambda: {
                "file_path": str(self.file_path) if self.file_path else None,
                "progress": (self.file_position / self.file_size) if self.file_size else 0.0,
                "is_active": self.sd_active,
                "file_position": self.file_position,
                "file_size": self.file_size,
            },
            "pause_resume": lambda: {"is_paused": self.is_paused},
            "display_status": lambda: {
                "progress": (self.file_position / self.file_size) if self.file_size else 0.0,
                "message": None,
            },
            "extruder": self.extruder.status,
            "heater_bed": self.heater_bed.status,
            "heaters": lambda: {
                "available_heaters": ["extruder", "heater_bed"],
                "available_sensors": ["extruder", "heater_bed"],
            },
            "filament_switch_sensor runout": lambda: {
                "filament_detected": self.filament_detected,
                "enabled": True,
            },
            "idle_timeout": lambda: {
                "state": "Printing" if self.sd_active else "Ready",
                "printing_time": self.print_duration,
            },
        }

    def _configfile(self) -> dict[str, Any]:
        sections = {
            "virtual_sdcard": {"path": str(self.gcodes_dir)},
            "pause_resume": {},
            "display_status": {},
            "extruder": {"max_temp": "300"},
            "heater_bed": {"max_temp": "130"},
            "filament_switch_sensor runout": {"pause_on_runout": "False"},
        }
        return {"config": sections, "settings": sections, "save_config_pending": False}

    def _status(self, objects: dict[str, list[str] | None]) -> dict[str, dict[str, Any]]:
        known = self._objects()
        out: dict[str, dict[str, Any]] = {}
        for name, fields in objects.items():
            getter = known.get(name)
            full = getter() if getter else {}
            out[name] = full if fields is None else {k: full.get(k) for k in fields}
        return out

    def _finish(self, state: str, message: str = "") -> None:
        self.print_state = state
        self.print_message = message
        self.sd_active = False
        self.sd_paused = False
        self.is_paused = False
        self.file_path = None

    def _shutdown(self, message: str) -> None:
        self.klippy_state = "shutdown"
        self.state_message = (
            f"{message}\nOnce the underlying issue is corrected, use the\n"
            '"FIRMWARE_RESTART" command to reset the firmware.'
        )
        if self.print_state in ("printing", "paused"):
            self._finish("error", "Klipper shutdown")
        self.extruder.target = self.heater_bed.target = 0.0

    async def _tick_forever(self) -> None:
        last_push = 0.0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._advance(TICK_SECONDS)
            now = time.monotonic()
            if now - last_push >= REFRESH_SECONDS:
                last_push = now
                self._push_status(now)
                self._push_cycles += 1

    def _advance(self, seconds: float) -> None:
        self.extruder.step(seconds, self.heat_rate)
        self.heater_bed.step(seconds, self.heat_rate)
        if not self.sd_active or self.print_state != "printing":
            return
        self.print_duration += seconds
        self._byte_budget += seconds * self.bytes_per_second
        while self.line_index < len(self.file_lines):
            line = self.file_lines[self.line_index]
            command = line.split(";", 1)[0].strip().upper()
            if command.startswith(("M109", "M190")):
                heater = self.extruder if command.startswith("M109") else self.heater_bed
                target = _param(command, "S")
                if target is not None and heater.target != target:
                    heater.set_target(target)
                if not heater.reached():
                    self._byte_budget = 0.0
                    return  # TEMPERATURE_WAIT: the file does not advance
            cost = len(line.encode()) + 1
            if cost > self._byte_budget:
                return
            self._byte_budget -= cost
            if command.startswith("M104"):
                self.extruder.set_target(_param(command, "S") or 0.0)
            elif command.startswith("M140"):
                self.heater_bed.set_target(_param(command, "S") or 0.0)
            self.line_index += 1
            self.file_position += cost
        self.file_position = self.file_size
        self._respond("Done printing file")
        self._finish("complete")

    # ---- G-code ---------------------------------------------------------------------------

    def _run_script(self, script: str) -> None:
        for raw in script.split("\n"):
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            try:
                self._run_command(line)
            except GCodeError as exc:
                self._respond(f"!! {exc}")
                raise

    def _run_command(self, line: str) -> None:
        name, _, rest = line.partition(" ")
        cmd = name.upper()
        if self.klippy_state != "ready" and cmd not in ("FIRMWARE_RESTART", "RESTART"):
            raise GCodeError(self.state_message.split("\n", 1)[0])
        if cmd == "SDCARD_PRINT_FILE":
            self._print_file(_named(rest).get("FILENAME", ""))
        elif cmd == "PAUSE":
            if self.is_paused:
                self._respond("// Print already paused")
                return
            if self.sd_active:
                self.sd_active = False
                self.sd_paused = True
                self.print_state = "paused"
            else:
                self._respond("// action:paused")
            self.is_paused = True
        elif cmd == "RESUME":
            if not self.is_paused:
                self._respond("// Print is not paused, resume aborted")
                return
            if self.sd_paused:
                self.sd_active = True
                self.sd_paused = False
                self.print_state = "printing"
            else:
                self._respond("// action:resumed")
            self.is_paused = False
        elif cmd == "CANCEL_PRINT":
            if self.sd_active or self.sd_paused:
                self._finish("cancelled")
            else:
                self._respond("// action:cancel")
            self.is_paused = self.sd_paused = False
        elif cmd in ("M104", "M109"):
            self.extruder.set_target(_param(line.upper(), "S") or 0.0)
        elif cmd in ("M140", "M190"):
            self.heater_bed.set_target(_param(line.upper(), "S") or 0.0)
        elif cmd == "TURN_OFF_HEATERS":
            self.extruder.target = self.heater_bed.target = 0.0
        elif cmd in ("FIRMWARE_RESTART", "RESTART"):
            self._reset_printer()
        else:
            self._respond(f'// Unknown command:"{cmd}"')

    def _print_file(self, filename: str) -> None:
        if self.sd_active:
            raise GCodeError("SD busy")
        path = self.gcodes_dir / filename.lstrip("/")
        try:
            data = path.read_text(errors="replace")
        except OSError:
            raise GCodeError("Unable to open file") from None
        self._reset_job()
        self.file_path = path
        self.filename = filename.lstrip("/")
        self.file_lines = data.split("\n")
        self.file_size = len(data.encode())
        self._respond(f"File opened:{self.filename} Size:{self.file_size}")
        self._respond("File selected")
        self.sd_active = True
        self.print_state = "printing"

    def _reset_job(self) -> None:
        self.line_index = self.file_position = 0
        self.print_duration = self._byte_budget = 0.0
        self.print_message = ""
        self.is_paused = self.sd_paused = False

    # ---- protocol -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._clients.append(client)
        try:
            while True:
                try:
                    data = await reader.readuntil(b"\x03")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                request = json.loads(data[:-1])
                self._handle(client, request)
        finally:
            self._clients.remove(client)
            writer.close()

    def _handle(self, client: _Client, request: dict[str, Any]) -> None:
        method = request.get("method")
        params = request.get("params") or {}
        self.requests.append((str(method), params))
        try:
            result = self._dispatch(client, str(method), params)
        except GCodeError as exc:
            reply: dict[str, Any] = {
                "id": request.get("id"),
                "error": {"error": "WebRequestError", "message": str(exc)},
            }
        else:
            reply = {"id": request.get("id"), "result": result if result is not None else {}}
        if request.get("id") is not None:
            self._send(client, reply)

    def _dispatch(self, client: _Client, method: str, params: dict[str, Any]) -> Any:
        if method == "info":
            return {
                "state": self.klippy_state,
                "state_message": self.state_message,
                "hostname": "kittylab-klippy-peer",
                "klipper_path": str(Path(__file__).parent),
                "python_path": sys.executable,
                "process_id": os.getpid(),
                "user_id": os.getuid(),
                "group_id": os.getgid(),
                "log_file": None,
                "config_file": None,
                "software_version": "v0.12.0-kittylab-peer",
                "cpu_info": "",
            }
        if method == "list_endpoints":
            return {"endpoints": sorted(self._endpoints())}
        if method == "objects/list":
            return {"objects": list(self._objects())}
        if method in ("objects/query", "objects/subscribe"):
            objects = params.get("objects")
            if not isinstance(objects, dict):
                raise GCodeError("Missing Argument [objects]")
            status = self._status(objects)
            if method == "objects/subscribe":
                client.subscription = dict(objects)
                client.template = dict(params.get("response_template") or {})
                client.last_sent = json.loads(json.dumps(status))
            return {"eventtime": time.monotonic(), "status": status}
        if method == "gcode/subscribe_output":
            client.output_template = dict(params.get("response_template") or {})
            return {}
        if method == "gcode/script":
            script = params.get("script")
            if not isinstance(script, str):
                raise GCodeError("Missing Argument [script]")
            self.scripts.append(script)
            self._run_script(script)
            return {}
        if method == "gcode/help":
            return {"SDCARD_PRINT_FILE": "Loads a SD file and starts the print"}
        if method == "gcode/restart":
            self._run_script("RESTART")
            return {}
        if method == "gcode/firmware_restart":
            self._run_script("FIRMWARE_RESTART")
            return {}
        if method == "pause_resume/pause":
            self._run_script("PAUSE")
            return {}
        if method == "pause_resume/resume":
            self._run_script("RESUME")
            return {}
        if method == "pause_resume/cancel":
            self._run_script("CANCEL_PRINT")
            return {}
        if method == "register_remote_method":
            return {}
        if method == "emergency_stop":
            self._shutdown("Shutdown due to webhooks request")
            return {}
        raise GCodeError(f"webhooks: No registered callback for path '{method}'")

    @staticmethod
    def _endpoints() -> list[str]:
        return [
            "list_endpoints",
            "info",
            "emergency_stop",
            "register_remote_method",
            "objects/list",
            "objects/query",
            "objects/subscribe",
            "gcode/help",
            "gcode/script",
            "gcode/restart",
            "gcode/firmware_restart",
            "gcode/subscribe_output",
            "pause_resume/pause",
            "pause_resume/resume",
            "pause_resume/cancel",
        ]

    def _push_status(self, eventtime: float) -> None:
        for client in list(self._clients):
            if client.subscription is None:
                continue
            current = self._status(client.subscription)
            diff: dict[str, dict[str, Any]] = {}
            for name, fields in current.items():
                before = client.last_sent.get(name, {})
                changed = {k: v for k, v in fields.items() if before.get(k) != v}
                if changed:
                    diff[name] = changed
            if diff:
                client.last_sent = json.loads(json.dumps(current))
                message = dict(client.template)
                message["params"] = {"eventtime": eventtime, "status": diff}
                self._send(client, message)

    def _respond(self, text: str) -> None:
        for client in list(self._clients):
            if client.output_template is not None:
                message = dict(client.output_template)
                message["params"] = {"response": text}
                self._send(client, message)

    @staticmethod
    def _send(client: _Client, message: dict[str, Any]) -> None:
        if not client.writer.is_closing():
            client.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\x03")


def _param(command: str, letter: str) -> float | None:
    match = re.search(rf"\b{letter}(-?\d+(?:\.\d+)?)", command.upper())
    return float(match.group(1)) if match else None


def _named(rest: str) -> dict[str, str]:
    """Klipper's extended G-code parameters: ``NAME=value`` with shell-style quoting."""
    out: dict[str, str] = {}
    for token in shlex.split(rest):
        key, _, value = token.partition("=")
        out[key.upper()] = value
    return out
