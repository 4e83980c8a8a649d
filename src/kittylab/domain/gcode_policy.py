"""A printer's G-code policy: the temperatures it may be driven to and the commands a print
file may carry beyond the ones every printer accepts. Pure: no I/O.

A printer declares its policy in its manifest attributes::

    attributes:
      gcode_policy:
        max_nozzle_c: 290          # °C; SET_HEATER_TEMPERATURE HEATER=extruder*, M104/M109, G10 S/R
        max_bed_c: 110             # °C; HEATER=heater_bed, M140/M190
        max_chamber_c: 60          # °C; M141/M191, any other Klipper heater
        allowed_commands: [PRINT_START, PRINT_END, M503]

Undeclared limits take the defaults below. Each is the ceiling of what ordinary desktop
printing needs and what common hardware survives:

- nozzle 300 °C: the hottest common filaments (PC, nylon, PC-CF) print at 260-300 °C,
  and 300 °C is where all-metal hotends and brass nozzles are usually rated (Marlin's
  stock ``HEATER_0_MAXTEMP`` is 275, Klipper's example configs use 250-300). A printer
  with a PTFE-lined hotend should declare 240-250.
- bed 120 °C: ABS, ASA and PC beds run at 90-115 °C, and PEI sheets and the magnetic
  stickers under them are rated to about 120 °C.
- chamber 70 °C: ABS and ASA want 45-60 °C; above about 70 °C printed ABS parts of the
  printer itself, stepper motors and electronics in the enclosure suffer.

``allowed_commands`` adds commands (``M503``, ``G29.2``, ``PRINT_START``, ``@pause``) to
the always-allowed set (``ALWAYS_ALLOWED_CLASSIC`` and ``ALWAYS_ALLOWED_EXTENDED`` in
``kittylab.domain.gcode_check``). Allowing a command never lifts a temperature limit:
``M104`` is always allowed and always checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kittylab.domain.errors import ValidationFailed

POLICY_ATTRIBUTE = "gcode_policy"
"""The device attribute holding a printer's policy."""

DEFAULT_MAX_NOZZLE_C = 300.0
DEFAULT_MAX_BED_C = 120.0
DEFAULT_MAX_CHAMBER_C = 70.0

HeaterKind = Literal["nozzle", "bed", "chamber"]

# A declared limit past these is a typo (a Fahrenheit value, an extra zero), not a printer:
# even PEEK printers run nozzles below 500 °C, beds below 200 °C, chambers below 150 °C.
_NONSENSE_ABOVE: Mapping[str, float] = {
    "max_nozzle_c": 500.0,
    "max_bed_c": 200.0,
    "max_chamber_c": 150.0,
}
_FIELDS = (*_NONSENSE_ABOVE, "allowed_commands")
_MAX_ALLOWED = 200

# How commands are written in a policy (case-insensitive): a classic code with an optional
# subcode (M503, G29.2), a Klipper command or macro (PRINT_START), an OctoPrint host
# command (@pause).
_CLASSIC = re.compile(r"([GMTD])0*([0-9]{1,6})(?:\.0*([0-9]{1,3}))?")
_EXTENDED = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_HOST = re.compile(r"@[A-Z0-9_]{1,63}")


@dataclass(frozen=True)
class GcodePolicy:
    """What G-code one printer accepts. Temperatures in °C; ``allowed_commands`` holds
    normalized command words (``normalize_command``)."""

    max_nozzle_c: float = DEFAULT_MAX_NOZZLE_C
    max_bed_c: float = DEFAULT_MAX_BED_C
    max_chamber_c: float = DEFAULT_MAX_CHAMBER_C
    allowed_commands: frozenset[str] = frozenset()

    def limit(self, heater: HeaterKind) -> float:
        if heater == "nozzle":
            return self.max_nozzle_c
        if heater == "bed":
            return self.max_bed_c
        return self.max_chamber_c

    @property
    def lowest_limit(self) -> float:
        """The limit for a heater whose kind is unknown (a Klipper ``heater_generic``)."""
        return min(self.max_nozzle_c, self.max_bed_c, self.max_chamber_c)

    def allows(self, word: str) -> bool:
        return word in self.allowed_commands


DEFAULT_POLICY = GcodePolicy()


def normalize_command(text: str) -> str | None:
    """The canonical form of a command word (``m0503`` → ``M503``, ``g29.02`` →
    ``G29.2``, ``print_start`` → ``PRINT_START``, ``@Pause`` → ``@PAUSE``), or None when
    ``text`` is not one."""
    word = text.strip().upper()
    classic = _CLASSIC.fullmatch(word)
    if classic is not None:
        letter, number, sub = classic.groups()
        return f"{letter}{int(number)}" + (f".{int(sub)}" if sub is not None else "")
    if _HOST.fullmatch(word) or _EXTENDED.fullmatch(word):
        return word
    return None


def policy_from_attributes(attributes: Mapping[str, Any] | None) -> GcodePolicy:
    """The policy a printer's attributes declare (the defaults where they declare none).

    ``ValidationFailed`` names the offending field under ``gcode_policy`` (``gcode_policy.
    max_bed_c``, ``gcode_policy.allowed_commands[2]``): a policy that cannot be read is
    never guessed at."""
    raw = (attributes or {}).get(POLICY_ATTRIBUTE)
    if raw is None:
        return DEFAULT_POLICY
    if not isinstance(raw, Mapping):
        raise ValidationFailed(
            POLICY_ATTRIBUTE, "must be a mapping such as {max_nozzle_c: 280, max_bed_c: 110}"
        )
    for key in raw:
        if key not in _FIELDS:
            raise ValidationFailed(
                f"{POLICY_ATTRIBUTE}.{key}", f"unknown field; expected {', '.join(_FIELDS)}"
            )
    limits = {name: _temperature(raw, name, DEFAULT_POLICY) for name in _NONSENSE_ABOVE}
    return GcodePolicy(
        max_nozzle_c=limits["max_nozzle_c"],
        max_bed_c=limits["max_bed_c"],
        max_chamber_c=limits["max_chamber_c"],
        allowed_commands=_allowed(raw.get("allowed_commands")),
    )


def _temperature(raw: Mapping[str, Any], name: str, defaults: GcodePolicy) -> float:
    value = raw.get(name)
    if value is None:
        return float(getattr(defaults, name))
    ceiling = _NONSENSE_ABOVE[name]
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= ceiling
    ):
        raise ValidationFailed(
            f"{POLICY_ATTRIBUTE}.{name}",
            f"must be a temperature in °C above 0 and at most {ceiling:g}, got {value!r}",
        )
    return float(value)


def _allowed(value: object) -> frozenset[str]:
    at = f"{POLICY_ATTRIBUTE}.allowed_commands"
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise ValidationFailed(at, "must be a list of commands, such as [PRINT_START, M503]")
    if len(value) > _MAX_ALLOWED:
        raise ValidationFailed(at, f"lists more than {_MAX_ALLOWED} commands")
    words: set[str] = set()
    for i, item in enumerate(value):
        word = normalize_command(item) if isinstance(item, str) else None
        if word is None:
            raise ValidationFailed(
                f"{at}[{i}]",
                f"{item!r} is not a command: write a G-code (M503, G29.2), a Klipper "
                "command or macro (PRINT_START) or an OctoPrint host command (@pause)",
            )
        words.add(word)
    return frozenset(words)
