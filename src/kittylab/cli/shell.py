"""``kittylab shell``: a conversation with a running KittyLab over HTTP, with line history,
tab completion of device names and a clear rendering of actions waiting for approval.

The conversation id is kept between lines, so "pause it" refers to what was said before;
``/new`` starts a new conversation, ``/quit`` (or Ctrl-D) ends the shell.

Issue 16: ``--continue ID`` shows a conversation's history (``/api/conversations/{id}/
messages``) and carries on in it — from any client of any of its participants. While a
conversation is open the shell follows its event stream (``/events``) and prints what it
did not say itself: a command's outcome that came after its reply, and what another
participant's client said meanwhile.
"""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

HISTORY_LIMIT = 200
"""At most this many of the newest messages are shown when a conversation is continued."""


class ShellError(Exception):
    """The service could not be reached or refused the request; the message says why."""


class ShellSession:
    def __init__(
        self,
        client: httpx.Client,
        channel: str = "cli",
        *,
        events: httpx.Client | None = None,
        show: Callable[[str], None] | None = None,
    ) -> None:
        """``events``: a client for the conversation's event stream (its own: the stream
        stays open on another thread), and ``show`` where what it brings is printed;
        without them the shell prints only its own replies."""
        self.client = client
        self.channel = channel
        self.conversation_id: UUID | None = None
        self._names: list[str] | None = None
        self._events = events
        self._show = show
        self._own_requests: set[str] = set()
        self._told_commands: set[str] = set()
        self._following: UUID | None = None
        # Events that arrive while a turn is being sent wait until its answer says which
        # of them are the turn's own (its request id, a command it already told).
        self._lock = threading.Lock()
        self._sending = False
        self._held: list[dict[str, Any]] = []

    def resume(self, conversation_id: UUID) -> str:
        """Continue ``conversation_id``: its history, oldest first, for printing."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < HISTORY_LIMIT:
            params: dict[str, Any] = {"limit": min(100, HISTORY_LIMIT - len(items))}
            if cursor:
                params["cursor"] = cursor
            try:
                response = self.client.get(
                    f"/api/conversations/{conversation_id}/messages", params=params
                )
            except httpx.HTTPError as exc:
                raise ShellError(f"cannot reach KittyLab ({type(exc).__name__})") from exc
            data = response.json() if response.content else {}
            if response.status_code >= 400:
                raise ShellError(str(data.get("detail") or f"HTTP {response.status_code}"))
            items += data.get("items", [])
            cursor = data.get("nextCursor")
            if not cursor:
                break
        self.conversation_id = conversation_id
        self._follow()
        lines = [render_message(m) for m in reversed(items)]
        if cursor:
            lines.insert(0, f"(the {HISTORY_LIMIT} newest messages)")
        return "\n".join(lines) or "(no messages yet)"

    def _follow(self) -> None:
        """Follow the open conversation's events on a background thread (one per
        conversation; one following an older conversation stops at its next event)."""
        if self._events is None or self._show is None or self.conversation_id is None:
            return
        if self._following == self.conversation_id:
            return
        self._following = self.conversation_id
        thread = threading.Thread(
            target=self._listen, args=(self.conversation_id,), daemon=True, name="shell-events"
        )
        thread.start()

    def _listen(self, conversation_id: UUID) -> None:
        assert self._events is not None
        last: str | None = None
        failures = 0
        while self._following == conversation_id and failures < 5:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with self._events.stream(
                    "GET", f"/api/conversations/{conversation_id}/events", headers=headers
                ) as stream:
                    if stream.status_code >= 400:
                        return
                    failures = 0
                    for line in stream.iter_lines():
                        if self._following != conversation_id:
                            return
                        if line.startswith("id: "):
                            last = line[4:].strip()
                        elif line.startswith("data: "):
                            self._event(json.loads(line[6:]))
            except (httpx.HTTPError, ValueError):
                failures += 1
            except Exception:  # the shell is closing under the thread: stop following
                return

    def close(self) -> None:
        """Stop following the conversation's events (the thread ends at its next line)."""
        self._following = None

    def _event(self, message: dict[str, Any]) -> None:
        """Print a pushed message unless this shell already showed it."""
        assert self._show is not None
        with self._lock:
            if self._sending:
                self._held.append(message)
                return
        if message.get("requestId") in self._own_requests:
            return
        if message.get("kind") == "outcome" and message.get("commandId") in self._told_commands:
            return
        self._show(render_message(message))

    def send(self, text: str) -> str:
        with self._lock:
            self._sending = True
        try:
            return self._send(text)
        finally:
            with self._lock:
                self._sending = False
                held, self._held = self._held, []
            for message in held:
                self._event(message)

    def _send(self, text: str) -> str:
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
        self._own_requests.add(str(data.get("routing", {}).get("requestId")))
        command = data.get("command") or {}
        if command.get("status") in ("acked", "failed"):
            self._told_commands.add(str(command.get("id")))  # its outcome was the reply
        self._follow()
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


def render_message(message: dict[str, Any]) -> str:
    """One stored or pushed message as the shell prints it."""
    text = str(message.get("text", ""))
    kind = message.get("kind")
    if kind == "request":
        return f"you ({message.get('channel') or '?'})> {text}"
    if kind == "outcome":
        return f"kitty> [later] {text}"
    return f"kitty> {text}"


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
