"""A UniFi Access webhook event, read for what presence needs. Pure.

The payload (UniFi Access API, webhook event ``access.door.unlock``; sample in the public
mirror of the reference, unifi-access-api-openapi.pages.dev, and in UniFi's community
threads) looks like::

    {"event": "access.door.unlock",
     "event_object_id": "4a98adf6-…",            # the event's id: retries repeat it
     "data": {"location": {"id": "d2b87427-…", "location_type": "door", "name": …},
              "actor": {"id": "…", "name": "…", "type": "user"},
              "object": {"result": "ACCESS", "authentication_type": "NFC", …},
              "device": {…}}}

Only a granted door access says a known person walked in; everything else is read as
"not evidence of presence" rather than guessed at (fail closed: a false *present* is the
unsafe mistake, since presence lets hazardous work go ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kittylab.domain.errors import ValidationFailed

DOOR_UNLOCK = "access.door.unlock"
# ``data.object.result`` of a door access: ACCESS when the door opened for the person;
# anything else (BLOCKED, a missing result) is not a granted access.
GRANTED = "ACCESS"
_MAX_ID = 128


@dataclass(frozen=True)
class DoorEvent:
    event: str
    event_id: str | None
    door_id: str | None
    actor_id: str | None
    actor_name: str | None
    result: str | None

    @property
    def is_door_access(self) -> bool:
        return self.event == DOOR_UNLOCK

    @property
    def granted(self) -> bool:
        return self.result is not None and self.result.upper() == GRANTED


def parse_event(payload: object) -> DoorEvent:
    """Read a (signature-verified) delivery. Raises ``ValidationFailed`` naming the field
    when the shape is not a UniFi Access event at all; fields that only some events
    carry are ``None`` when absent."""
    if not isinstance(payload, dict):
        raise ValidationFailed("body", "must be a JSON object (a UniFi Access event)")
    event = payload.get("event")
    if not isinstance(event, str) or not event.strip():
        raise ValidationFailed("event", "must be the event name, e.g. access.door.unlock")
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise ValidationFailed("data", "must be an object")
    return DoorEvent(
        event=event.strip(),
        event_id=_identifier(payload, "event_object_id", "event_object_id"),
        door_id=_identifier(_section(data, "location"), "id", "data.location.id"),
        actor_id=_identifier(_section(data, "actor"), "id", "data.actor.id"),
        actor_name=_text(_section(data, "actor").get("name")),
        result=_text(_section(data, "object").get("result")),
    )


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"data.{key}", "must be an object")
    return value


def _identifier(section: dict[str, Any], key: str, field: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_ID or not value.isprintable():
        raise ValidationFailed(field, f"must be an id of at most {_MAX_ID} printable characters")
    return value


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
