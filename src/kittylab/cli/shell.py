"""``kittylab shell``: a conversation with a running KittyLab over HTTP, with line history,
tab completion of device names and a clear rendering of actions waiting for approval.

The conversation id is kept between lines, so "pause it" refers to what was said before;
``/new`` starts a new conversation, ``/quit`` (or Ctrl-D) ends the shell.
"""

from __future__ import annotations

import textwrap
from typing import Any
from uuid import UUID

import httpx


class ShellError(Exception):
    """The service could not be reached or refused the request; the message says why."""


class ShellSession:
    def __init__(self, client: httpx.Client, channel: str = "cli") -> None:
        self.client = client
        self.channel = channel
        self.conversation_id: UUID | None = None
        self._names: list[str] | None = None

    def send(self, text: str) -> str:
        body: dict[str, Any] = {"channel": self.channel, "input": {"text": text}}
        if self.conversation_id is not None:
            body["conversationId"] = str(self.conversation_id)
        try:
            response = self.client.post("/api/query", json=body)
        except httpx.HTTPError as exc:
            raise ShellError(f"cannot reach KittyLab ({type(exc).__name__})") from exc
        data = response.json() if response.content else {}
        if response.status_code >= 400:
            raise ShellError(str(data.get("detail") or f"HTTP {response.status_code}"))
        self.conversation_id = UUID(data["conversationId"])
        return render(data)

    def device_names(self) -> list[str]:
        """Every device's display name and aliases, lower case, for completion."""
        if self._names is None:
            names: set[str] = set()
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 500}
                if cursor:
                    params["cursor"] = cursor
                try:
                    page = self.client.get("/api/devices", params=params).json()
                except (httpx.HTTPError, ValueError):
                    break
                for device in page.get("items", []):
                    names.add(str(device.get("displayName", "")).lower())
                    names.update(str(a).lower() for a in device.get("aliases", []))
                cursor = page.get("nextCursor")
                if not cursor:
                    break
            self._names = sorted(n for n in names if n)
        return self._names

    def complete(self, line: str) -> list[str]:
        """Completions for the last word(s) of ``line``: device names it could begin."""
        lowered = line.lower()
        out = []
        for name in self.device_names():
            for cut in range(len(lowered), -1, -1):
                if cut == 0 or lowered[cut - 1] == " ":
                    tail = lowered[cut:]
                    if tail and name.startswith(tail) and name != tail:
                        out.append(line[:cut] + name)
                        break
        return out


def render(data: dict[str, Any]) -> str:
    lines = [f"kitty> {reply['text']}" for reply in data.get("replies", [])]
    hazard = data.get("pendingHazard")
    if hazard:
        lines.append("  !! WAITING FOR SAFETY APPROVAL — nothing was sent to the device")
        where = f"zone {hazard.get('zone')}, hazard {hazard.get('hazardLevel')}"
        lines.append(f"     {hazard.get('intent')} on {hazard.get('device')} ({where})")
        for need in hazard.get("missing", []):
            lines.append(f"     still missing: {need}")
        if hazard.get("eventId"):
            lines.append(f"     approvers: kittylab approve {hazard['eventId']} --key KEYFILE")
        for policy in hazard.get("policies", []):
            needs = [f"approver role: {' or '.join(policy['requiredRoles'])}"]
            if policy.get("requiresDualConfirm"):
                needs.append("two different approvers")
            if policy.get("requiresPresence"):
                needs.append("someone present in the zone")
            if policy.get("ppe"):
                needs.append("PPE: " + ", ".join(policy["ppe"]))
            lines.append(f"     policy {policy['name']}: " + "; ".join(needs))
    routing = data.get("routing", {})
    cost = routing.get("costEstimate")
    confidence = f"confidence {routing.get('confidence', 0):.2f}"
    meta = f"[{routing.get('selectedTier')} · {routing.get('outcome')} · {confidence}"
    meta += f" · {routing.get('latencyMs')} ms"
    if cost not in (None, 0, "0", "0.000000"):
        meta += f" · ${cost}"
    lines.append(textwrap.indent(meta + "]", "  "))
    return "\n".join(lines)
