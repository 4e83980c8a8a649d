"""Users and roles: who may act, validated before anything is stored."""

from __future__ import annotations

import re
from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

from kittylab.domain.enums import Role
from kittylab.domain.errors import ValidationFailed

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
