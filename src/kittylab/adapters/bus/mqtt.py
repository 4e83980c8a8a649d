"""A reconnecting MQTT client shared by everything in one process.

- ``publish`` may be called from any thread, connected or not: messages wait in an
  in-memory outbox (bounded, oldest dropped and counted) and go out in order once the
  broker answers. That suits state, context and progress messages, which a newer one
  supersedes; device commands, which must not run late, use ``publish_now`` instead.
- ``subscribe`` registers a handler for a topic filter; filters are (re)subscribed on
  every connection, so a broker restart loses no subscription.
- Each handler gets a topic's retained message once per connection: the first copy is
  its starting point, and every later change reaches it live. A later retained copy
  comes from another SUBSCRIBE to the same filter (a handler added while connected), and
  is dropped for handlers that already have the topic: it is never newer than what they
  have, and may be older, since amqtt snapshots its retained store when the SUBSCRIBE
  arrives and can deliver that copy after a newer live message. Passed on, it would set
  a device's state back in the driver and make a silent device look freshly heard from.
- ``run`` connects, reconnects with exponential backoff, and runs until cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from prometheus_client import Counter, Gauge

from kittylab.adapters.tls import client_context
from kittylab.config import MqttSettings
from kittylab.domain.errors import InfrastructureError, ValidationFailed
from kittylab.domain.networks import is_loopback_host

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None]]

_DROPPED = Counter(
    "kittylab_mqtt_dropped_total", "Outbox messages dropped while the broker was unreachable."
)
_MATCH_CACHE_SIZE = 4096
"""Topics whose matching handlers are remembered (see ``MqttBus._handlers_for``)."""

_CONNECTED = Gauge("kittylab_mqtt_connected", "1 while this process is connected to the broker.")


class BusUnavailable(InfrastructureError):
    """Not connected to the broker, or it did not confirm a publish in time."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    """With ``tls``: CA certificates trusted besides the system's (the lab CA)."""

    @property
    def beyond_loopback(self) -> bool:
        return not is_loopback_host(self.host)


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS, default port 8883).

    Errors name the setting but never repeat the URL, which may hold a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValidationFailed("mqtt.url", "must look like mqtt://host:1883 or mqtts://host:8883")
    try:
        port = parts.port
    except ValueError:
        raise ValidationFailed("mqtt.url", "has an invalid port") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def encode(payload: bytes | str | Mapping[str, Any] | list[Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


class MqttBus:
    def __init__(self, address: BrokerAddress, settings: MqttSettings, *, role: str) -> None:
        self._address = address
        self._settings = settings
        self._client_id = f"{settings.client_id_prefix}-{role}-{secrets.token_hex(4)}"
        self._handlers: list[tuple[str, MessageHandler]] = []
        self._matches: dict[str, list[tuple[str, MessageHandler]]] = {}
        self._outbox: deque[_Outgoing] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._connected: asyncio.Event | None = None
        self._client: aiomqtt.Client | None = None
        self._informed: dict[tuple[str, MessageHandler], set[str]] = {}
        """The topics each handler has had a message on, this connection (bus loop only)."""

    # --- used from any thread -------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any] | list[Any],
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Queue a message; it is sent as soon as (or once again) connected."""
        message = _Outgoing(topic, encode(payload), qos, retain)
        with self._lock:
            if len(self._outbox) >= self._settings.outbox_limit:
                self._outbox.popleft()
                _DROPPED.inc()
            self._outbox.append(message)
        self._wake()

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        """Call ``handler(topic, payload)`` for every message matching ``topic_filter``.

        Handlers run on the bus's event loop one message at a time: they must be quick
        (hand database work to a thread or a queue). An exception is logged, not raised.
        Filters on one bus should not overlap: MQTT 3.1.1 brokers may deliver a message
        once per matching filter, and each copy reaches every matching handler."""
        self._handlers.append((topic_filter, handler))
        self._matches = {}  # replaced, not cleared: the bus's loop may be reading it
        client, loop = self._client, self._loop
        if client is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(self._subscribe_one(client, topic_filter), loop)

    @property
    def address(self) -> BrokerAddress:
        return self._address

    @property
    def connected(self) -> bool:
        return self._connected is not None and self._connected.is_set()

    @property
    def pending(self) -> int:
        """Messages waiting in the outbox."""
        return len(self._outbox)

    # --- used on the bus's event loop -----------------------------------------------

    async def publish_now(
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any] | list[Any],
        *,
        qos: int = 1,
        retain: bool = False,
        confirm_within: float = 5.0,
    ) -> None:
        """Publish at once and wait for the broker to take it (PUBACK for QoS 1).

        Raises ``BusUnavailable`` when not connected or not confirmed within
        ``confirm_within`` seconds: nothing is queued, so a command is never delivered late."""
        client = self._client
        if client is None or not self.connected:
            raise BusUnavailable("the MQTT broker is not reachable")
        try:
            await asyncio.wait_for(
                client.publish(topic, encode(payload), qos=qos, retain=retain), confirm_within
            )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise BusUnavailable(f"the MQTT broker did not take the message: {exc}") from exc

    async def wait_connected(self, within_seconds: float) -> bool:
        self._bind_loop()
        assert self._connected is not None
        try:
            await asyncio.wait_for(self._connected.wait(), within_seconds)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with exponential backoff."""
        self._bind_loop()
        assert self._connected is not None
        address = self._address
        delay = self._settings.reconnect_min_seconds
        while True:
            # Python 3.11's TaskGroup leaves this task's cancel count raised after a child
            # failed (a lost connection): only a rise beyond it is a new cancellation.
            cancels = _cancels()
            try:
                client, inbox = self._new_client()
                async with client:
                    self._informed = {}  # the broker replays its retained messages afresh
                    subscribed = {f for f, _ in self._handlers}
                    for topic_filter in subscribed:
                        await self._subscribe_one(client, topic_filter)
                    _honour_cancellation(cancels)
                    self._client = client
                    # A handler added meanwhile found no client to subscribe it with.
                    for topic_filter in {f for f, _ in self._handlers} - subscribed:
                        await self._subscribe_one(client, topic_filter)
                    self._connected.set()
                    _CONNECTED.set(1)
                    log.info("connected to MQTT broker %s:%s", address.host, address.port)
                    delay = self._settings.reconnect_min_seconds
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._drain(client))
                        group.create_task(self._receive(client, inbox))
            except* aiomqtt.MqttError as group_error:
                first = group_error.exceptions[0]
                log.warning(
                    "MQTT broker %s:%s unreachable (%s); retrying in %.1f s",
                    self._address.host,
                    self._address.port,
                    first,
                    delay,
                )
            finally:
                self._client = None
                self._connected.clear()
                _CONNECTED.set(0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max_seconds)

    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._connected = asyncio.Event()
            if self._outbox:
                self._wakeup.set()

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return  # not running yet: ``run`` drains what is waiting once connected
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wakeup.set()
        else:
            loop.call_soon_threadsafe(wakeup.set)

    def _new_client(self) -> tuple[aiomqtt.Client, asyncio.Queue[aiomqtt.Message]]:
        """A client, and its queue of received messages (made by aiomqtt from the
        ``queue_type`` given here), which ``_receive`` drains in bursts."""
        inboxes: list[asyncio.Queue[aiomqtt.Message]] = []

        class Inbox(asyncio.Queue[aiomqtt.Message]):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                inboxes.append(self)

        address = self._address
        client = aiomqtt.Client(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=self._client_id,
            keepalive=self._settings.keepalive_seconds,
            timeout=self._settings.connect_timeout_seconds,
            # The broker's certificate and name are verified (system CAs and the lab CA).
            tls_context=client_context(address.ca_file) if address.tls else None,
            # Small messages both ways: Nagle's algorithm against delayed ACKs would add
            # tens of milliseconds to every command.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            queue_type=Inbox,
        )
        [inbox] = inboxes
        return client, inbox

    async def _subscribe_one(self, client: aiomqtt.Client, topic_filter: str) -> None:
        await client.subscribe(topic_filter, qos=1)

    async def _drain(self, client: aiomqtt.Client) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._outbox:
                message = self._outbox[0]
                # Removed only once the broker has it: a drop mid-send re-sends it after
                # reconnecting (at-least-once, which state and progress messages tolerate).
                await client.publish(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )
                _honour_cancellation()
                with self._lock:
                    if self._outbox and self._outbox[0] is message:
                        self._outbox.popleft()

    async def _receive(self, client: aiomqtt.Client, inbox: asyncio.Queue[aiomqtt.Message]) -> None:
        async for message in client.messages:
            await self._deliver(message)
            _honour_cancellation()
            # The iterator costs a task and a trip round the event loop per message; what
            # has queued up meanwhile is taken directly (a third less CPU per message in
            # benchmarks/telemetry_bench.py). Handlers run in arrival order all the same.
            while not inbox.empty():
                await self._deliver(inbox.get_nowait())
                _honour_cancellation()

    async def _deliver(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        for entry in self._handlers_for(message.topic):
            topic_filter, handler = entry
            if not self._first_or_live(entry, topic, retained=message.retain):
                continue
            try:
                await handler(topic, payload)
            except Exception:
                log.exception("MQTT handler for %s failed on %s", topic_filter, topic)

    def _first_or_live(
        self, entry: tuple[str, MessageHandler], topic: str, *, retained: bool
    ) -> bool:
        """Whether ``entry`` takes this message: a live one always, a retained copy only
        if it is the handler's first message on the topic (see the module doc)."""
        informed = self._informed.get(entry)
        if informed is None:
            informed = self._informed[entry] = set()
        if retained and topic in informed:
            return False
        if len(informed) >= _MATCH_CACHE_SIZE:
            informed.clear()  # any client may publish to topics never seen again
        informed.add(topic)
        return True

    def _handlers_for(self, topic: aiomqtt.Topic) -> list[tuple[str, MessageHandler]]:
        """The handlers whose filter matches, remembered per topic: matching every filter
        anew costs more than handling a small message. Bounded, since any client may
        publish to topics never seen again."""
        matches = self._matches
        found = matches.get(topic.value)
        if found is None:
            if len(matches) >= _MATCH_CACHE_SIZE:
                matches.clear()
            found = [(f, h) for f, h in self._handlers if topic.matches(f)]
            matches[topic.value] = found
        return found


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _honour_cancellation(before: int = 0) -> None:
    """Raise ``CancelledError`` if this task was cancelled (more than ``before`` times)
    while awaiting aiomqtt.

    aiomqtt waits with ``asyncio.wait_for``, which in Python 3.11 swallows a cancellation
    that arrives just as the awaited reply does (the broker's PUBACK, SUBACK). The loop
    would then go on, and ``run``, cancelled, would wait for it forever."""
    if _cancels() > before:
        raise asyncio.CancelledError
