"""Print file names: what a ``print_start`` may name on a printer.

A print file name is one plain name — never a path, a URL or a line of G-code — because
every printer integration puts it somewhere it would mean more: OctoPrint into a URL path
(``/api/files/local/<name>``, where ``../`` reaches its other endpoints), Moonraker into
``SDCARD_PRINT_FILE FILENAME="<name>"``, a script Klipper runs line by line, Bambu into an
FTP command and an ``ftp://`` URL.

The rule, which every file the lab itself names passes (an upload's name, ``<stem>.gcode``
for a sliced one, ``part.gcode`` for a CAD artifact):

- 1 to ``MAX_LENGTH`` characters;
- ASCII letters, digits, ``_``, ``-`` and ``.`` only — so no ``/``, ``\\``, quotes,
  spaces, ``%`` (no percent-encoded separator such as ``%2F``), line breaks or any other
  control character, and no non-ASCII lookalike (a fullwidth ``／`` some servers fold to
  ``/``);
- it starts with a letter or digit: no leading ``-`` a command line would take for an
  option, no hidden ``.`` file;
- a ``.`` only between other characters: no ``..``, no trailing ``.``.

``PATTERN`` states the rule for JSON Schema (the ``print_start`` payload schema, which the
local model's grammar is also built from). It is not enough on its own: JSON Schema's
``pattern`` is a search, and in Python's ``re`` a ``$`` also matches before a final line
break, so ``"benchy.gcode\\n"`` passes it. ``problem`` (full match) is the check that
decides, in the command service and again in every driver.
"""

from __future__ import annotations

import re
import unicodedata

from kittylab.domain.errors import DeviceRefused, ValidationFailed

MAX_LENGTH = 128
"""Long enough for an uploaded name (at most 120) once slicing makes it ``<stem>.gcode``."""

PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*([.][A-Za-z0-9_-]+)*$"
"""The rule without its length, as a JSON Schema ``pattern`` (no look-arounds: the model's
grammar converter cannot take them). Segments between dots cannot overlap, so matching is
linear."""

_BODY = PATTERN.removeprefix("^").removesuffix("$")
_NAME = re.compile(_BODY)

RULE = "letters, digits, '_', '-' and single dots, starting with a letter or digit"


def name_regex(max_length: int = MAX_LENGTH) -> re.Pattern[str]:
    """The rule with a length limit as one regex for ``fullmatch`` (the upload route keeps
    its names shorter so that a sliced ``<stem>.gcode`` still fits ``MAX_LENGTH``)."""
    if not 1 <= max_length <= MAX_LENGTH:
        raise ValueError(f"max_length must be 1-{MAX_LENGTH}")
    return re.compile(rf"(?=[\s\S]{{1,{max_length}}}\Z){_BODY}")


def problem(name: object) -> str | None:
    """Why ``name`` is not a plain print file name, or None when it is one. Pure; the
    reason never repeats the name (it may hold control characters)."""
    if not isinstance(name, str):
        return "must be a string"
    if not name:
        return "must not be empty"
    if len(name) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "must not contain line breaks or other control characters"
    if "/" in name or "\\" in name:
        return "must be a plain file name, not a path ('/' and '\\' are not allowed)"
    if "%" in name:
        return "must not contain '%' (an encoded character could become a separator)"
    if '"' in name or "'" in name:
        return "must not contain quotes"
    if " " in name:
        return "must not contain spaces"
    if ".." in name:
        return "must not contain '..'"
    if name[0] in ".-":
        return "must start with a letter or digit"
    if _NAME.fullmatch(name) is None:
        return f"may only hold {RULE}"
    return None


def check(name: object, field: str = "file") -> str:
    """``name`` when it is a plain print file name, else ``ValidationFailed`` on ``field``."""
    reason = problem(name)
    if reason is not None:
        raise ValidationFailed(field, reason)
    assert isinstance(name, str)
    return name


def refuse_unless_plain(name: object, who: str) -> str:
    """The drivers' second look: ``name`` when it is a plain print file name, else
    ``DeviceRefused`` saying so for ``who`` (the device), so a command that got past the
    command service (an old stored schema, a custom one) still fails with a reason."""
    reason = problem(name)
    if reason is not None:
        raise DeviceRefused(f"{who}: print file name refused: it {reason}")
    assert isinstance(name, str)
    return name
