"""The MQTT bus against real brokers: the embedded amqtt broker and the machine's
Mosquitto (127.0.0.1:1883, which CI provides; the test fails if it is missing)."""

from __future__ import annotations

import asyncio
import json
import secrets
from uuid import UUID

import pytest

from kittylab.adapters.bus.mqtt import BrokerAddress, BusUnavailable, parse_broker_url
from kittylab.conversation.actions import BusContextPublisher
from kittylab.domain.errors import ValidationFailed
from tests.integration.live_bus import embedded_broker, eventually, free_port, running_bus

MOSQUITTO = BrokerAddress("127.0.0.1", 1883)


def test_messages_published_while_the_broker_is_down_arrive_when_it_returns() -> None:
    async def scenario() -> None:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        received: list[tuple[str, bytes]] = []

        async def collect(topic: str, payload: bytes) -> None:
            received.append((topic, payload))

        async with embedded_broker(port) as broker, running_bus(address, "sender") as sender:
            await broker.stop()
            await eventually(lambda: not sender.connected)
            sender.publish("kitty/jobs/j1", {"progress": 0.5}, retain=True)
            assert sender.pending == 1
            await broker.start()
            await eventually(lambda: sender.connected and sender.pending == 0, within=10)
            async with running_bus(address, "listener") as listener:
                listener.subscribe("kitty/jobs/#", collect)
                await eventually(lambda: received)
        assert received == [("kitty/jobs/j1", b'{"progress":0.5}')]

    asyncio.run(scenario())


def test_subscriptions_survive_a_broker_restart() -> None:
    async def scenario() -> None:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        received: list[bytes] = []

        async def collect(topic: str, payload: bytes) -> None:
            received.append(payload)

        async with embedded_broker(port) as broker, running_bus(address, "listener") as bus:
            bus.subscribe("kitty/safety/+", collect)
            await broker.stop()
            await eventually(lambda: not bus.connected)
            await broker.start()
            await eventually(lambda: bus.connected, within=10)
            await asyncio.sleep(0.2)  # resubscribed on connect, before `connected` is set
            async with running_bus(address, "sender") as sender:
                sender.publish("kitty/safety/e1", b"approved")
                await eventually(lambda: received)
        assert received == [b"approved"]

    asyncio.run(scenario())


def test_publish_now_refuses_instead_of_queueing_when_disconnected() -> None:
    async def scenario() -> None:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        async with embedded_broker(port) as broker, running_bus(address) as bus:
            await broker.stop()
            await eventually(lambda: not bus.connected)
            with pytest.raises(BusUnavailable, match="not reachable"):
                await bus.publish_now("kitty/devices/x/cmd", {"intent": "light_on"})
            assert bus.pending == 0

    asyncio.run(scenario())


def test_mosquitto_carries_retained_state_to_a_late_subscriber() -> None:
    topic = f"kitty/devices/test-{secrets.token_hex(4)}/state"

    async def scenario() -> None:
        seen: list[dict[str, object]] = []

        async def collect(_: str, payload: bytes) -> None:
            seen.append(json.loads(payload))

        async with running_bus(MOSQUITTO, "sender") as sender:
            await sender.publish_now(topic, {"on": True}, retain=True)
        async with running_bus(MOSQUITTO, "listener") as listener:
            listener.subscribe(topic, collect)
            await eventually(lambda: seen)
            await listener.publish_now(topic, b"", retain=True)  # clear it again
        assert seen == [{"on": True}]

    asyncio.run(scenario())


def test_a_handler_added_while_connected_leaves_the_others_state_alone() -> None:
    """A second SUBSCRIBE to a filter makes the broker replay its retained messages to the
    whole filter; amqtt may deliver that replay after a newer live message. The handlers
    that already have the topic must not get the copy (a driver took a printer's replayed
    ``idle`` over its live ``printing`` and failed the print's start; CI, issue 14)."""
    topic = "kitty/devices/prusa/state"

    async def scenario() -> None:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        first: list[bytes] = []
        second: list[bytes] = []

        async def to_first(_: str, payload: bytes) -> None:
            first.append(payload)

        async def to_second(_: str, payload: bytes) -> None:
            second.append(payload)

        async with embedded_broker(port), running_bus(address, "device") as device:
            await device.publish_now(topic, b"idle", retain=True)
            async with running_bus(
                address, "lab", attach=lambda bus: bus.subscribe("kitty/devices/+/state", to_first)
            ) as lab:
                await eventually(lambda: first == [b"idle"])
                await device.publish_now(topic, b"printing", retain=True)
                await eventually(lambda: first == [b"idle", b"printing"])
                lab.subscribe("kitty/devices/+/state", to_second)
                await eventually(lambda: second)
                await device.publish_now(topic, b"paused", retain=True)
                await eventually(lambda: second[-1:] == [b"paused"])
        assert first == [b"idle", b"printing", b"paused"]
        assert second == [b"printing", b"paused"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.lab", BrokerAddress("broker.lab", 1883)),
        ("mqtts://kl:s%40cret@broker.lab", BrokerAddress("broker.lab", 8883, "kl", "s@cret", True)),
        ("mqtt://127.0.0.1:18830", BrokerAddress("127.0.0.1", 18830)),
    ],
)
def test_broker_urls_are_parsed(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://kl:hunter2@broker", "mqtt://kl:hunter2@", "mqtt://kl:hunter2@host:99999"]
)
def test_a_bad_broker_url_is_refused_without_repeating_its_password(url: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        parse_broker_url(url)
    assert error.value.field == "mqtt.url"
    assert "hunter2" not in str(error.value)


def test_a_conversation_context_is_retained_for_the_next_client() -> None:
    conversation = UUID(int=42)

    async def scenario() -> list[dict[str, object]]:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        seen: list[dict[str, object]] = []

        async def collect(_: str, payload: bytes) -> None:
            seen.append(json.loads(payload))

        async with embedded_broker(port), running_bus(address, "server") as server:
            BusContextPublisher(server).publish(conversation, {"lastDevice": "prusa-mk4"})
            await eventually(lambda: server.pending == 0)
            async with running_bus(address, "wall-terminal") as terminal:
                terminal.subscribe(f"kitty/ctx/{conversation}", collect)
                await eventually(lambda: seen)
        return seen

    assert asyncio.run(scenario()) == [{"lastDevice": "prusa-mk4"}]
