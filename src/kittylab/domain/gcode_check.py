"""The line-by-line check of a print file against a printer's ``GcodePolicy``. Pure: it
reads the blocks of bytes it is given and keeps one line at a time (at most
``MAX_LINE_BYTES``), so a 256 MiB file costs no more memory than a small one.

What is refused, unless the policy's ``allowed_commands`` lists it:

- a temperature above the printer's limit, whatever command sets it: ``M104``/``M109``
  (``S``, ``R``, Marlin's autotemp ``B``), ``M140``/``M190``, ``M141``/``M191``,
  RepRapFirmware's ``G10 S/R``, Klipper's ``SET_HEATER_TEMPERATURE HEATER=… TARGET=…``
  and temperature-named parameters of an allowed macro (``PRINT_START BED=… EXTRUDER=…``);
  a temperature that is not a number, and a firmware preset (``M104 I1``) whose
  temperature cannot be known. Allowing a command never lifts a limit;
- ``M302`` (cold extrusion), ``M211 S0`` (soft endstops off), the EEPROM commands
  ``M500``-``M504`` (``M503`` only reads, but a print file has no business with the
  stored settings either), ``M303`` (PID autotune), ``M997`` (firmware update), and any
  other classic command outside ``ALWAYS_ALLOWED_CLASSIC``;
- OctoPrint host commands (``@pause``, ``@abort`` …);
- Klipper commands and macros outside ``ALWAYS_ALLOWED_EXTENDED``: ``SAVE_CONFIG``,
  ``FIRMWARE_RESTART``, ``RESTART``, ``RUN_SHELL_COMMAND`` and every unknown macro;
- a line that is not a command at all, or longer than ``MAX_LINE_BYTES`` before any
  comment.

How lines are read, erring towards seeing more commands than a firmware would:

- ``\\n``, ``\\r`` and NUL all end a line (Marlin ends lines at ``\\r``; C strings at
  NUL); line numbers count ``\\n``;
- ``;`` starts a comment; a leading ``N123`` and a trailing ``*45`` checksum are dropped;
  text is upper-cased (Klipper and ``GCODE_CASE_INSENSITIVE`` Marlin accept lower case);
- ``M 104``, ``M0104`` are ``M104``; a subcode (``M500.1``) is checked as its base
  command, since Marlin runs the base for most subcodes;
- older Marlin ends an SD-card command at ``:`` or ``#``: a classic command after one of
  them is checked as a command of its own;
- every occurrence of a temperature parameter is checked (firmwares differ on which of
  two ``S`` wins).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kittylab.domain.gcode_policy import GcodePolicy, HeaterKind

MAX_LINE_BYTES = 16 * 1024
"""A command line longer than this (before its comment) is refused: no slicer writes one,
and a firmware would cut it somewhere the check cannot predict."""
MAX_VIOLATIONS = 20
"""The check stops at this many violations: enough to fix a file, bounded to report."""
_WORD_SHOWN = 40

# Motion, extrusion, units and positioning; fans; progress and messages; stepper power;
# runtime-only motion tuning (lost at reset unless M500 stores it); print-job bookkeeping
# the slicers write (Prusa's printer checks M862.x, object labels M486, print area M555);
# tool changes and filament changes. Temperatures are listed and always limit-checked.
ALWAYS_ALLOWED_CLASSIC = frozenset(
    {
        # moves, arcs, dwell, firmware retraction, planes, units, homing, levelling, modes
        *("G0", "G1", "G2", "G3", "G4", "G5", "G10", "G11", "G17", "G18", "G19"),
        *("G20", "G21", "G28", "G29", "G30", "G80", "G90", "G91", "G92"),
        # extruder modes, flow and speed factors, linear/pressure advance, input shaping
        *("M82", "M83", "M220", "M221", "M900", "M572", "M593"),
        # fans
        *("M106", "M107"),
        # temperatures (limit-checked) and temperature reports
        *("M104", "M109", "M140", "M190", "M141", "M191", "M105", "M155"),
        # progress, messages, print timer, beeps
        *("M73", "M117", "M75", "M76", "M77", "M300"),
        # steppers, waiting for moves, position and firmware reports
        *("M17", "M18", "M84", "M400", "M114", "M115"),
        # runtime motion limits, firmware-retraction settings
        *("M201", "M203", "M204", "M205", "M207", "M208", "M209"),
        # slicer bookkeeping: Prusa printer checks, print area, object labels
        *("M862", "M555", "M486"),
        # soft endstops (refused when switched off), filament change, pause for the user
        *("M211", "M600", "M601", "M602"),
        "T",
    }
)
# Klipper's own commands that slicers write into print files and that change nothing
# beyond the print: layer info, object exclusion, heaters (limit-checked), fans, runtime
# pressure advance, velocity and retraction settings.
ALWAYS_ALLOWED_EXTENDED = frozenset(
    {
        "SET_PRINT_STATS_INFO",
        "EXCLUDE_OBJECT_DEFINE",
        "EXCLUDE_OBJECT_START",
        "EXCLUDE_OBJECT_END",
        "SET_HEATER_TEMPERATURE",
        "TEMPERATURE_WAIT",
        "SET_FAN_SPEED",
        "SET_PRESSURE_ADVANCE",
        "SET_VELOCITY_LIMIT",
        "SET_RETRACTION",
    }
)

_REASONS = {
    "M302": "allows cold extrusion (extruding below the firmware's minimum temperature)",
    "M211": "switches the soft endstops off",
    "M500": "writes the printer's stored settings (EEPROM)",
    "M501": "loads the printer's stored settings (EEPROM)",
    "M502": "resets the printer's settings to factory defaults",
    "M503": "reads the printer's stored settings (EEPROM commands do not belong in a print)",
    "M504": "checks the printer's stored settings (EEPROM)",
    "M303": "runs a PID autotune (heats with no print to watch it)",
    "M301": "changes the heater's PID tuning",
    "M304": "changes the bed's PID tuning",
    "M997": "starts a firmware update",
    "M999": "restarts the firmware",
    "M112": "stops the printer (emergency stop)",
    "M80": "switches the printer's power supply",
    "M81": "switches the printer's power supply",
    "M120": "changes endstop checking",
    "M121": "switches endstop checking off",
    "M92": "changes the axes' steps per mm",
    "M851": "changes the probe offset",
    "M145": "changes the firmware's material presets",
    "M118": "sends text to the host (action commands reach OctoPrint)",
    "M28": "writes a file on the printer's storage",
    "M29": "writes a file on the printer's storage",
    "M30": "deletes a file on the printer's storage",
    "M23": "selects a file on the printer's storage",
    "M24": "starts a print from the printer's storage",
    "M32": "starts a print from the printer's storage",
    "M808": "repeats part of the file",
    "SAVE_CONFIG": "writes Klipper's configuration file and restarts it",
    "FIRMWARE_RESTART": "restarts Klipper's firmware",
    "RESTART": "restarts Klipper",
    "PID_CALIBRATE": "runs a PID autotune (heats with no print to watch it)",
    "RUN_SHELL_COMMAND": "runs a program on the printer's host",
    "SDCARD_PRINT_FILE": "starts another file from the printer's storage",
    "SDCARD_RESET_FILE": "unloads the file being printed",
    "FORCE_MOVE": "moves a stepper without limits",
    "SET_KINEMATIC_POSITION": "declares the axes homed without homing them",
}

_SPLIT = re.compile(rb"([\n\r\x00])")
_FAST_MOVES = (b"G1 ", b"G0 ")
_LINE_NUMBER = re.compile(r"N\s*[0-9]+\s*")
_CHECKSUM = re.compile(r"\*\s*[0-9]*\s*$")
_CLASSIC = re.compile(r"([GMTD])\s*([0-9]+)(?:\.([0-9]+))?")
# Bare coordinates repeat the last move (Marlin's GCODE_MOTION_MODES, CNC habit).
_MODAL_MOVE = re.compile(r"[XYZEFABCUVWIJK]\s*[-+.0-9]")
_EXTENDED = re.compile(r"[A-Z_][A-Z0-9_]*")
_HOST = re.compile(r"@\s*([^\s]*)")
_PARAM = re.compile(r"([A-Z])([^A-Z]*)")
_KEY_VALUE = re.compile(r"([A-Z0-9_]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|(\S*))")
_NUMBER = re.compile(r"\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))")
_SECONDARY = re.compile(r"[:#]")

# Temperature commands: the heater they set and the parameters that carry a temperature.
_TEMPERATURES: dict[str, tuple[HeaterKind, str]] = {
    "M104": ("nozzle", "SRB"),
    "M109": ("nozzle", "SRB"),
    "G10": ("nozzle", "SR"),
    "M140": ("bed", "SR"),
    "M190": ("bed", "SR"),
    "M141": ("chamber", "SR"),
    "M191": ("chamber", "SR"),
}


@dataclass(frozen=True)
class Violation:
    """One refused line: its number (counting from 1; 0 for the file as a whole), the
    command word (empty when the line is not a command) and why it is refused."""

    line: int
    command: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line > 0 else ""  # 0: the file as a whole
        what = f"{self.command}: " if self.command else ""
        return f"{where}{what}{self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "command": self.command, "reason": self.reason}


@dataclass(frozen=True)
class GcodeCheck:
    """The outcome of checking one file. ``stopped_early``: the check stopped at
    ``max_violations`` and did not read the rest."""

    violations: tuple[Violation, ...]
    lines: int
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self, shown: int = 5) -> str:
        """The first ``shown`` violations in one sentence, for a job's failure reason."""
        listed = "; ".join(str(v) for v in self.violations[:shown])
        if self.stopped_early:
            return f"{listed} (and more: the check stopped at {len(self.violations)})"
        more = len(self.violations) - shown
        return f"{listed} (and {more} more)" if more > 0 else listed


def check_gcode(
    blocks: Iterable[bytes],
    policy: GcodePolicy,
    *,
    max_violations: int = MAX_VIOLATIONS,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> GcodeCheck:
    """Check a print file given as consecutive blocks of bytes (any size, split anywhere)
    against ``policy``. Never raises on any content."""
    found: list[Violation] = []
    last_line = 0
    for line, data, cut in _segments(blocks, max_line_bytes):
        last_line = line
        if not data or data.startswith(b";"):
            continue
        if data.startswith(_FAST_MOVES) and b":" not in data and b"#" not in data:
            continue  # most of a file: a move carries nothing else a firmware would run
        for command, reason in _check_line(data, cut, policy, max_line_bytes):
            found.append(Violation(line, command, reason))
            if len(found) >= max_violations:
                return GcodeCheck(tuple(found), line, stopped_early=True)
    return GcodeCheck(tuple(found), last_line)


def check_text(text: str, policy: GcodePolicy, **options: int) -> GcodeCheck:
    """``check_gcode`` of a whole file held as text (tests, short snippets)."""
    return check_gcode([text.encode("utf-8", "surrogatepass")], policy, **options)


def _segments(blocks: Iterable[bytes], max_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """Split the stream at ``\\n``, ``\\r`` and NUL into (line number, piece, cut), empty
    pieces left out: at most ``max_bytes`` of each piece are kept, ``cut`` says the rest
    was dropped. Only the piece being read is held. Ends with ``(lines, b"", False)``,
    the number of lines read."""
    line = 1
    pending = b""
    cut = False
    last = b""
    for block in blocks:
        if not block:
            continue
        last = block[-1:]
        if b"\r" in block or b"\x00" in block:
            parts = _SPLIT.split(block)
            pieces, separators = parts[0::2], parts[1::2]
        else:  # the usual case: split in C, every separator a new line
            pieces, separators = block.split(b"\n"), None
        pending, cut = _joined(pending, pieces[0], max_bytes, cut)
        if len(pieces) == 1:
            continue  # the block ends inside the pending piece
        if pending or cut:
            yield line, pending, cut
        if separators is None:
            for piece in pieces[1:-1]:
                line += 1
                if piece:
                    yield line, piece[:max_bytes], len(piece) > max_bytes
            line += 1
        else:
            for i in range(1, len(pieces)):
                if separators[i - 1] == b"\n":
                    line += 1
                piece = pieces[i]
                if piece and i < len(pieces) - 1:
                    yield line, piece[:max_bytes], len(piece) > max_bytes
        pending, cut = _joined(b"", pieces[-1], max_bytes, False)
    if pending or cut:
        yield line, pending, cut
    yield (line - 1 if last == b"\n" else line), b"", False


def _joined(pending: bytes, piece: bytes, max_bytes: int, cut: bool) -> tuple[bytes, bool]:
    if len(pending) + len(piece) <= max_bytes:
        return (pending + piece if pending else piece), cut
    return (pending + piece)[:max_bytes] if len(pending) < max_bytes else pending, True


def _check_line(
    data: bytes, cut: bool, policy: GcodePolicy, max_bytes: int
) -> Iterator[tuple[str, str]]:
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    code, has_comment = _code_of(text)
    if cut and not has_comment:
        yield "", f"the line is longer than {max_bytes} bytes before any comment"
        return
    if not code:
        return
    yield from _check_command(code, policy)
    # Older Marlin ends an SD-card command at ':' or '#': what follows is a command too.
    for part in _SECONDARY.split(code)[1:]:
        part = part.strip()
        if _CLASSIC.match(part):
            yield from _check_command(part, policy)


def _code_of(text: str) -> tuple[str, bool]:
    """The command part of a line: comment, line number and checksum dropped, upper
    case; and whether the line had a comment."""
    code, semicolon, _ = text.partition(";")
    code = code.upper().strip()
    numbered = _LINE_NUMBER.match(code)
    if numbered is not None:
        code = code[numbered.end() :]
    code = _CHECKSUM.sub("", code).strip()
    return code, bool(semicolon)


def _check_command(code: str, policy: GcodePolicy) -> Iterator[tuple[str, str]]:
    if code.startswith("@"):
        host = _HOST.match(code)
        word = "@" + (host.group(1) if host else "")
        if not policy.allows(word):
            yield (
                _shown(word),
                "is a host command, run by OctoPrint rather than the printer",
            )
        return
    classic = _CLASSIC.match(code)
    if classic is not None:
        yield from _check_classic(classic, code, policy)
        return
    if _MODAL_MOVE.match(code):
        return
    extended = _EXTENDED.match(code)
    if extended is not None:
        yield from _check_extended(extended.group(), code[extended.end() :], policy)
        return
    yield "", f"{_shown(code)!r} is not a G-code command"


def _check_classic(
    match: re.Match[str], code: str, policy: GcodePolicy
) -> Iterator[tuple[str, str]]:
    letter, digits, sub = match.groups()
    number = digits.lstrip("0") or "0"
    if len(number) > 6 or (sub is not None and len(sub.lstrip("0")) > 3):
        yield _shown(letter + digits), "is not a known command"
        return
    base = "T" if letter == "T" else f"{letter}{number}"
    word = base if sub is None else f"{base}.{sub.lstrip('0') or '0'}"
    params = _PARAM.findall(code[match.end() :])
    if not (policy.allows(word) or policy.allows(base)):
        refusal = _classic_refusal(base, params)
        if refusal is not None:
            yield word, refusal
    heater = _TEMPERATURES.get(base)
    if heater is not None:
        yield from _check_temperatures(word, heater, params, policy)


def _classic_refusal(base: str, params: list[tuple[str, str]]) -> str | None:
    if base == "M211":
        # Marlin reads "S" with no number as on, any number as on unless it is zero.
        for letter, value in params:
            if letter == "S" and value.strip():
                number = _leading_number(value)
                if number is None or number == 0:
                    return _REASONS["M211"]
        return None
    if base in ALWAYS_ALLOWED_CLASSIC:
        return None
    if base.startswith("D"):
        return "is a Marlin debug command (D1 erases the EEPROM)"
    return _REASONS.get(base, "is not in this printer's G-code policy")


def _check_temperatures(
    word: str,
    heater_params: tuple[HeaterKind, str],
    params: list[tuple[str, str]],
    policy: GcodePolicy,
) -> Iterator[tuple[str, str]]:
    heater, letters = heater_params
    for letter, value in params:
        if letter == "I" and word.startswith("M"):
            yield word, "uses a firmware preset (I) whose temperature cannot be checked"
        elif letter in letters and value.strip():
            number = _leading_number(value)
            if number is None:
                yield word, f"{letter}{_shown(value.strip())} is not a temperature"
            else:
                refusal = _over_limit(heater, number, policy.limit(heater))
                if refusal is not None:
                    yield word, refusal


def _check_extended(word: str, args: str, policy: GcodePolicy) -> Iterator[tuple[str, str]]:
    shown = _shown(word)
    if not (word in ALWAYS_ALLOWED_EXTENDED or policy.allows(word)):
        yield (
            shown,
            _REASONS.get(word, "is not a Klipper command or macro this printer's policy allows"),
        )
        return
    pairs = [
        (m.group(1), m.group(2) or m.group(3) or m.group(4) or "")
        for m in _KEY_VALUE.finditer(args)
    ]
    if word == "SET_HEATER_TEMPERATURE":
        names = [value for key, value in pairs if key == "HEATER"]
        heater, limit = _klipper_heater(names, policy)
        for key, value in pairs:
            if key == "TARGET":
                number = _float(value)
                if number is None:
                    yield shown, f"TARGET={_shown(value)} is not a temperature"
                    continue
                refusal = _over_limit(heater, number, limit)
                if refusal is not None:
                    yield shown, refusal
        return
    if word == "TEMPERATURE_WAIT":
        return  # waits for a temperature; sets none
    # A macro that heats takes its temperatures as parameters (PRINT_START BED=110
    # EXTRUDER=250): check the ones whose names say what they heat.
    for key, value in pairs:
        kind = _heater_named(key)
        number = _float(value) if kind is not None else None
        if kind is not None and number is not None:
            refusal = _over_limit(kind, number, policy.limit(kind))
            if refusal is not None:
                yield shown, f"{key}: {refusal}"


def _klipper_heater(names: list[str], policy: GcodePolicy) -> tuple[str, float]:
    """The heater a ``SET_HEATER_TEMPERATURE`` sets, and its limit: the extruders, the
    bed, a chamber; any other (or several, or none) gets the lowest limit."""
    kinds = {_heater_of(name) for name in names}
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind is not None:
            return kind, policy.limit(kind)
    label = names[0].lower() if len(names) == 1 else "heater"
    return _shown(label), policy.lowest_limit


def _heater_of(name: str) -> HeaterKind | None:
    if name.startswith("EXTRUDER"):
        return "nozzle"
    if name == "HEATER_BED":
        return "bed"
    if "CHAMBER" in name:
        return "chamber"
    return None


def _heater_named(key: str) -> HeaterKind | None:
    if "BED" in key:
        return "bed"
    if "CHAMBER" in key:
        return "chamber"
    if any(part in key for part in ("EXTRUDER", "HOTEND", "NOZZLE", "TEMP")):
        return "nozzle"
    return None


def _over_limit(heater: str, value: float, limit: float) -> str | None:
    if not math.isfinite(value):
        return f"{heater} temperature {value} is not a finite number"
    if value > limit:
        return f"{heater} {value:g} °C is above this printer's {limit:g} °C limit"
    return None


def _leading_number(value: str) -> float | None:
    """The number a firmware reads at the start of a parameter value (Marlin's
    ``strtof`` stops at ``E`` and ``X``; Klipper splits at every letter)."""
    match = _NUMBER.match(value)
    return float(match.group(1)) if match is not None else None


def _float(value: str) -> float | None:
    """A Klipper extended parameter as Klipper reads it (Python's ``float``: ``4.8e2``
    and ``4_80`` are 480)."""
    try:
        return float(value.strip())
    except ValueError:
        return None


def _shown(text: str) -> str:
    return text if len(text) <= _WORD_SHOWN else text[: _WORD_SHOWN - 1] + "…"
