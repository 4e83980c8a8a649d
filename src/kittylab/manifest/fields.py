"""Typed, problem-collecting reads of manifest fields, and checks on raw values
(JSON-ness, secret references, public keys)."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from kittylab.domain.errors import ValidationFailed
from kittylab.domain.sanitize import SECRET_KEY_PATTERN
from kittylab.manifest.problems import ManifestProblem
from kittylab.safety.signatures import parse_public_key

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)


# --- Reading fields -----------------------------------------------------------------------


class Fields:
    """Typed reads from one mapping of the manifest at ``path``. A bad value records a
    problem and reads as ``None`` instead of raising, so one pass reports every mistake;
    ``ok`` turns false on the first problem. Keys outside ``allowed`` are problems too: a
    misspelt ``requires_presence`` must not silently switch a safety check off."""

    def __init__(
        self, problems: list[ManifestProblem], path: str, raw: object, allowed: Sequence[str]
    ) -> None:
        self.problems = problems
        self.path = path
        self.ok = True
        self._data: dict[str, object] = {}
        if not isinstance(raw, dict):
            self.fail_at(path, "must be a mapping of field: value")
            return
        for key, value in raw.items():
            if isinstance(key, str) and key in allowed:
                self._data[key] = value
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected {', '.join(allowed)}"
            self.fail(str(key), f"unknown field; {hint}")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> None:
        self.fail_at(self.at(key), message)

    def fail_at(self, path: str, message: str) -> None:
        self.problems.append(ManifestProblem(path, message))
        self.ok = False

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> object:
        return self._data.get(key)

    def text(self, key: str, *, required: bool = True, max_length: int | None = 100) -> str | None:
        """Stripped text; ``None`` when absent or blank (a problem if ``required``)."""
        value = self._data.get(key)
        if isinstance(value, bool | int | float):
            # YAML reads 0042 as a number and yes as a boolean; quoting keeps the text.
            self.fail(key, "must be text; put it in quotes")
            return None
        if value is not None and not isinstance(value, str):
            self.fail(key, "must be text")
            return None
        value = (value or "").strip()
        if not value:
            if required:
                self.fail(key, "is required")
            return None
        if max_length is not None and len(value) > max_length:
            self.fail(key, f"is longer than {max_length} characters")
            return None
        return value

    def flag(self, key: str) -> bool:
        """A boolean that defaults to false."""
        value = self._data.get(key, False)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
            return False
        return value

    def choice(self, key: str, enum: type[_E]) -> _E | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum)
            self.fail(key, f"{value!r} is not one of {allowed}")
            return None

    def texts(self, key: str, *, max_length: int = 100, required: bool = False) -> list[str] | None:
        """A list of distinct, non-blank texts (``[]`` when absent); ``None`` if any item is
        bad, so indexes in the result match those in the file."""
        value = self._data.get(key)
        if value is None:
            if required:
                self.fail(key, "must list at least one")
            return None if required else []
        if not isinstance(value, list):
            self.fail(key, "must be a list, such as [a, b]")
            return None
        items: list[str] = []
        seen: set[str] = set()
        ok = True
        for i, item in enumerate(value):
            at = f"{self.at(key)}[{i}]"
            text = item.strip() if isinstance(item, str) else ""
            if not text:
                self.fail_at(at, "must be non-empty text")
            elif len(text) > max_length:
                self.fail_at(at, f"is longer than {max_length} characters")
            elif text.casefold() in seen:
                self.fail_at(at, f"{text!r} is listed twice")
            else:
                seen.add(text.casefold())
                items.append(text)
                continue
            ok = False
        if ok and required and not items:
            self.fail(key, "must list at least one")
            return None
        return items if ok else None

    def mapping(self, key: str) -> dict[str, Any] | None:
        """A mapping that can be stored as JSON (``{}`` when absent)."""
        value = self._data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, "must be a mapping of name: value")
            return None
        found = json_problem(value, self.at(key))
        if found is not None:
            self.fail_at(*found)
            return None
        return value

    def domain(self, check: Callable[[], _T]) -> _T | None:
        """Run a domain validator; its ``ValidationFailed`` becomes a problem at the field
        it names, relative to this mapping."""
        try:
            return check()
        except ValidationFailed as exc:
            self.fail(exc.field, exc.message)
            return None


def json_problem(value: object, path: str) -> tuple[str, str] | None:
    """The first (path, message) in ``value`` that JSON cannot hold, or ``None``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (path, f"key {key!r} must be text")
            found = json_problem(item, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = json_problem(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float) and math.isfinite(value):
        return None
    # Dates and timestamps are what YAML usually produces here; quoting keeps them as text.
    return (path, f"a {type(value).__name__} cannot be stored; write it in quotes")


_ENV_REF = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def connection_problems(value: object, path: str) -> list[tuple[str, str]]:
    """Connection settings may hold secrets only as ``${ENV_VAR}`` references, so the
    manifest can live in git; every reference must name a valid variable."""
    problems: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{path}.{key}"
            secret_like = item is not None and not isinstance(item, bool | dict | list)
            if secret_like and _names_a_secret(str(key)):
                if not (isinstance(item, str) and _is_env_reference(item)):
                    problems.append((at, "looks like a secret; write a ${ENV_VAR} reference"))
                continue
            problems.extend(connection_problems(item, at))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems.extend(connection_problems(item, f"{path}[{i}]"))
    elif isinstance(value, str):
        for name in _ENV_REF.findall(value):
            if not _ENV_NAME.fullmatch(name):
                problems.append((path, f"${{{name}}} is not a valid environment variable name"))
        if "${" in _ENV_REF.sub("", value):
            problems.append((path, "has a '${' without its closing '}'"))
        if _URL_PASSWORD.search(value):
            problems.append((path, "holds a password in the URL; write user:${ENV_VAR}@host"))
    return problems


# Short names that hold credentials in integration settings, besides the longer ones the
# log sanitizer knows ("password", "api_key" …).
_SECRET_NAMES = frozenset({"key", "auth", "bearer", "cookie", "session", "pass", "pin", "psk"})
# user:password@ in a URL, unless the password is a ${ENV_VAR} reference.
_URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?!\$\{[^}]*\}@)[^@/\s]+@")


def _names_a_secret(key: str) -> bool:
    return key.lower() in _SECRET_NAMES or SECRET_KEY_PATTERN.search(key) is not None


def _is_env_reference(value: str) -> bool:
    match = _ENV_REF.fullmatch(value.strip())
    return match is not None and _ENV_NAME.fullmatch(match.group(1)) is not None


def public_key_problem(text: str) -> str | None:
    """Why ``text`` is not a public key an approver can sign with, or ``None``. The same
    rule as the signature verifier's (``kittylab.safety.signatures.parse_public_key``), so
    a manifest cannot register a key whose approvals would all be refused."""
    try:
        parse_public_key(text)
    except ValidationFailed as exc:
        return exc.message
    return None
