"""Make user text and payloads safe to log or send: no secrets, no control characters."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|access[_-]?(code|key)|authorization"
    r"|credential|private[_-]?key|signature",
    re.IGNORECASE,
)
"""Names of fields whose values are secrets: redacted in logs, refused as literals in a
lab manifest."""
_SECRET_VALUES = [
    re.compile(r"\bkl_[A-Za-z0-9_\-]{16,}"),  # KittyLab API tokens
    re.compile(r"\b(sk|pk|rk)[-_][A-Za-z0-9_\-]{16,}"),  # common provider key shapes
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(://[^:/@\s]+:)[^@\s]+@"),  # password in a URL
]


def is_secret_name(name: str) -> bool:
    return SECRET_KEY_PATTERN.search(name) is not None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sanitize_text(text: str, max_length: int = 500) -> str:
    """Redact secret-looking substrings, strip control characters and line breaks (so one
    log line stays one line) and cut to ``max_length``."""
    clean = text
    for pattern in _SECRET_VALUES:
        clean = pattern.sub(_redact_match, clean)
    clean = _CONTROL.sub(" ", clean).replace("\n", " ").replace("\r", " ")
    if len(clean) > max_length:
        clean = clean[: max_length - 1] + "…"
    return clean


def _redact_match(match: re.Match[str]) -> str:
    if match.lastindex and match.group(1) and match.group(1).startswith("://"):
        return f"{match.group(1)}{REDACTED}@"
    return REDACTED


def sanitize_payload(value: Any, max_length: int = 2000) -> Any:
    """Recursively redact values under secret-looking keys and sanitize every string."""
    if isinstance(value, dict):
        return {
            str(k): REDACTED
            if SECRET_KEY_PATTERN.search(str(k))
            else sanitize_payload(v, max_length)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [sanitize_payload(v, max_length) for v in value]
    if isinstance(value, str):
        return sanitize_text(value, max_length)
    return value
