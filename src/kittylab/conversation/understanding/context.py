"""Conversation context: the devices, zone and job last mentioned, so "pause it" and "the
lights there too" resolve. Kept in ``ConversationSession.state["context"]`` as plain JSON;
every client continuing the conversation reads the same value."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

_MAX_RECENT = 5


@dataclass(frozen=True)
class ConversationContext:
    device: str | None = None
    """external_id of the device last acted on or asked about."""
    zone: str | None = None
    intent: str | None = None
    """The last device intent, for "the bench lights too"."""
    args: dict[str, Any] = field(default_factory=dict)
    job: str | None = None
    """The file of the print last started."""
    recent_devices: tuple[str, ...] = ()
    turns: int = 0

    def to_state(self) -> dict[str, Any]:
        data = asdict(self)
        data["recent_devices"] = list(self.recent_devices)
        return data

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> ConversationContext:
        """Read back what ``to_state`` wrote; anything malformed is forgotten rather than
        trusted (the state is shared by every client of the conversation)."""
        if not isinstance(state, dict):
            return cls()

        def text(key: str) -> str | None:
            value = state.get(key)
            return value if isinstance(value, str) and 0 < len(value) <= 200 else None

        recent = state.get("recent_devices")
        args = state.get("args")
        turns = state.get("turns")
        return cls(
            device=text("device"),
            zone=text("zone"),
            intent=text("intent"),
            args=dict(args) if isinstance(args, dict) else {},
            job=text("job"),
            recent_devices=tuple(
                r for r in (recent if isinstance(recent, list) else []) if isinstance(r, str)
            )[:_MAX_RECENT],
            turns=turns if isinstance(turns, int) and turns >= 0 else 0,
        )

    def after(
        self,
        *,
        device: str | None,
        zone: str | None,
        intent: str | None,
        args: dict[str, Any] | None = None,
        job: str | None = None,
    ) -> ConversationContext:
        """The context after a turn about ``device`` (None keeps what was known)."""
        recent = self.recent_devices
        if device is not None:
            recent = (device, *(r for r in recent if r != device))[:_MAX_RECENT]
        return ConversationContext(
            device=device or self.device,
            zone=zone or self.zone,
            intent=intent or self.intent,
            args=dict(args or {}) if intent else dict(self.args),
            job=job or self.job,
            recent_devices=recent,
            turns=self.turns + 1,
        )
