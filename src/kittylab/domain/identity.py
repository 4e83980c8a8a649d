"""Users, roles and token lifetimes: who may act and for how long, validated before
anything is stored."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email

from kittylab.domain.enums import Role
from kittylab.domain.errors import AuthenticationRequired, ValidationFailed

MAX_DISPLAY_NAME = 200
# Lower case only, so "Sam" and "sam" can never be two different people; a leading letter
# keeps usernames readable in logs and CLI arguments.
USERNAME_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")


def validate_username(value: str) -> str:
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValidationFailed(
            "username", "must start with a lower-case letter; then letters, digits, . _ -"
        )
    return value


def validate_display_name(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise ValidationFailed("display_name", "is required")
    if len(name) > MAX_DISPLAY_NAME:
        raise ValidationFailed("display_name", f"is longer than {MAX_DISPLAY_NAME} characters")
    return name


def validate_roles(values: Iterable[str | Role]) -> list[Role]:
    """A non-empty subset of the four roles, without repeats, in a stable order."""
    roles: list[Role] = []
    for value in values:
        try:
            role = Role(value)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise ValidationFailed("roles", f"{value!r} is not one of {allowed}") from None
        if role not in roles:
            roles.append(role)
    if not roles:
        raise ValidationFailed("roles", "must hold at least one role")
    return sorted(roles, key=list(Role).index)


def validate_optional_email(value: str | None) -> str | None:
    """Offline operators may have no email; when one is given it must be well formed."""
    if value is None or not value.strip():
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValidationFailed("email", str(exc)) from None


def holds_any(user_roles: Iterable[Role], required: Iterable[Role]) -> bool:
    return bool(set(user_roles) & set(required))


# --- API token lifetimes -------------------------------------------------------------------

MIN_TOKEN_LIFETIME = timedelta(minutes=1)
# Ten years: long enough for any deliberate choice, short enough that a datetime cannot
# overflow and a typo (an extra digit) is caught.
MAX_TOKEN_LIFETIME = timedelta(days=3650)

_LIFETIME = re.compile(r"(\d{1,9})\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class TokenExpired(AuthenticationRequired):
    """A token that was valid and has run out (``expires_at``). A 401 like any refused
    token, but it says why, so its holder asks for a new one instead of hunting a typo."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"the API token expired at {expires_at.isoformat()}")
        self.expires_at = expires_at


def validate_token_lifetime(lifetime: timedelta, field: str) -> timedelta:
    """A token lifetime between ``MIN_TOKEN_LIFETIME`` and ``MAX_TOKEN_LIFETIME``;
    ``ValidationFailed`` on ``field`` otherwise."""
    if lifetime < MIN_TOKEN_LIFETIME:
        raise ValidationFailed(field, "must be at least 60 seconds")
    if lifetime > MAX_TOKEN_LIFETIME:
        raise ValidationFailed(field, f"must be at most {MAX_TOKEN_LIFETIME.days} days")
    return lifetime


def parse_token_lifetime(text: str, field: str = "expires") -> timedelta:
    """A lifetime written as a number and a unit (``90s``, ``45m``, ``12h``, ``30d``,
    ``2w``), validated like ``validate_token_lifetime``."""
    match = _LIFETIME.fullmatch(text.strip().lower())
    if match is None:
        raise ValidationFailed(field, f"{text!r} is not a lifetime like 90s, 45m, 12h, 30d or 2w")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_TOKEN_LIFETIME.total_seconds():  # before timedelta could overflow
        raise ValidationFailed(field, f"must be at most {MAX_TOKEN_LIFETIME.days} days")
    return validate_token_lifetime(timedelta(seconds=seconds), field)
