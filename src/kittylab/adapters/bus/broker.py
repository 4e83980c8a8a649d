"""The embedded MQTT broker (amqtt) that ``kittylab serve`` runs when no broker URL is set.

It listens on loopback (beyond it only over TLS, with a certificate) and admits only the
lab's bus identities (``credentials.py``): an anonymous client, an unknown username or a
wrong password is refused at connect, and every publish, subscription and delivery is
checked against the topic ACL of ``domain/bus_acl`` by the two plugins below. amqtt's own
plugins do not fit: its file authentication reads only Argon2 and SHA-512-crypt hashes,
its ACL plugin takes fixed per-username lists (no per-device rules), and nothing in amqtt
checks a client's *will* topic, so a client could leave a ``cmd`` behind as its last
will; ``LabAuthPlugin`` refuses such a connect. And amqtt 0.12 sends retained messages
past the plugins: on every connect it replays whatever matches *any* client's
subscriptions to the new client, unchecked (so a device heard every retained state and
context); ``_LabBroker`` sends a client only the retained messages of its own
subscriptions that it may receive.

The identities file is re-read when it changes, so a credential issued or a device added
takes effect without a restart, and a deleted identity loses its rights on its next message.
A lab with networked MQTT devices points ``KITTYLAB_MQTT__URL`` at its Mosquitto instead
(``kittylab mqtt config`` writes its password file and ACL from the same identities).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from kittylab.adapters.bus.credentials import Identities
from kittylab.adapters.tls import ServerCertificate
from kittylab.domain import bus_acl
from kittylab.domain.bus_acl import BusIdentity
from kittylab.domain.errors import InfrastructureError

log = logging.getLogger(__name__)


class BrokerUnavailable(InfrastructureError):
    """The embedded broker could not start (port taken, bad interface)."""


class _IdentityCache:
    """The identities file, re-read when its modification time or size changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, tuple[tuple[int, int], Identities]] = {}

    def get(self, path: Path) -> Identities:
        try:
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return Identities(path)  # nobody is admitted: fail closed
        with self._lock:
            cached = self._loaded.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
        identities = Identities.load(path)
        with self._lock:
            self._loaded[path] = (version, identities)
        return identities


_CACHE = _IdentityCache()


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


class LabAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped here
    """Admits a client only with the username and password of a lab identity, and only
    if its will message (if any) goes to a topic it may publish on."""

    @dataclass
    class Config:
        identities_file: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        path = Path(self.config.identities_file)
        identity = _CACHE.get(path).authenticate(_text(session.username), _text(session.password))
        if identity is None:
            log.warning(
                "MQTT client refused: bad or missing credentials",
                extra={"client_id": session.client_id, "username": _text(session.username)},
            )
            return False
        will = _text(session.will_topic)
        if session.will_flag and (will is None or not bus_acl.may_publish(identity, will)):
            log.warning(
                "MQTT client refused: its will names a topic it may not publish on",
                extra={"client_id": session.client_id, "username": identity.username},
            )
            return False
        return True


class LabTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt is untyped here
    """Every publish, subscription and delivery checked against ``domain/bus_acl``."""

    @dataclass
    class Config:
        identities_file: str = ""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        if session is None or not topic:
            return False
        identity = self._identity(session)
        match action:
            case Action.PUBLISH:
                allowed = bus_acl.may_publish(identity, topic)
            case Action.SUBSCRIBE:
                allowed = bus_acl.may_subscribe(identity, topic)
            case Action.RECEIVE:
                return bus_acl.may_receive(identity, topic)  # silent: routine filtering
            case _:
                return False
        if not allowed:
            log.warning(
                "MQTT %s refused by the bus ACL",
                action.value if action else "?",
                extra={"username": _text(session.username), "topic": topic},
            )
        return allowed

    def _identity(self, session: Session) -> BusIdentity | None:
        username = _text(session.username)
        if not username:
            return None
        entry = _CACHE.get(Path(self.config.identities_file)).entries.get(username)
        return entry.identity if entry is not None else None


class _LabBroker(Broker):  # type: ignore[misc]  # amqtt is untyped here
    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        subscribers = self._subscriptions.get(topic_filter, [])
        if not any(s.client_id == session.client_id for s, _ in subscribers):
            return  # another client's subscription (amqtt replays them all on connect)
        handler = self._get_handler(session)
        if handler is None:
            return
        # As amqtt sends them (concurrently, then waiting for all), less what the ACL forbids.
        sends = [
            asyncio.Task(
                handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                )
            )
            for topic, retained in list(self._retained_messages.items())
            if self._matches(topic, topic_filter)
            and await self._topic_filtering(session, topic=topic, action=Action.RECEIVE)
        ]
        if sends:
            await asyncio.wait(sends)


class EmbeddedBroker:
    """``certificate``: listen with TLS (``mqtts://``), presenting it; ``kittylab serve``
    gives one whenever the broker listens beyond loopback (``bootstrap.embedded_broker``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        identities_file: Path,
        certificate: ServerCertificate | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.identities_file = identities_file
        self.certificate = certificate
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.certificate is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        plugin_config = {"identities_file": str(self.identities_file)}
        listener: dict[str, Any] = {"type": "tcp", "bind": f"{self.host}:{self.port}"}
        if self.certificate is not None:
            listener |= {
                "ssl": True,
                "certfile": str(self.certificate.cert),
                "keyfile": str(self.certificate.key),
            }
        return {
            "listeners": {"default": listener},
            # Only ours: amqtt's default plugins admit anonymous clients, log every packet
            # and publish $SYS topics.
            "plugins": {
                f"{__name__}.LabAuthPlugin": plugin_config,
                f"{__name__}.LabTopicPlugin": plugin_config,
            },
        }

    async def start(self) -> None:
        broker = _LabBroker(self._config())
        try:
            await broker.start()
        except Exception as exc:  # amqtt raises BrokerError or OSError, wrapped or not
            raise BrokerUnavailable(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {exc}"
            ) from exc
        self._broker = broker
        log.info("embedded MQTT broker listening", extra={"url": self.url})

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
