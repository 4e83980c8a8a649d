"""The embedded MQTT broker (amqtt) that ``kittylab serve`` runs when no broker URL is set.

It listens on loopback only and accepts anonymous clients: it exists so a fresh install
has a working bus, not to face a network. A lab with networked MQTT devices points
``KITTYLAB_MQTT__URL`` at its Mosquitto/EMQX instead.
"""

from __future__ import annotations

import logging
from typing import Any

from amqtt.broker import Broker

from kittylab.domain.errors import InfrastructureError

log = logging.getLogger(__name__)


class BrokerUnavailable(InfrastructureError):
    """The embedded broker could not start (port taken, bad interface)."""


class EmbeddedBroker:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only authentication: amqtt's default plugins also log every packet and
            # publish $SYS topics, which a loopback bus does not need.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def start(self) -> None:
        broker = Broker(self._config())
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
