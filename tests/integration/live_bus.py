"""A real MQTT bus for tests: the embedded broker (amqtt) on a free port, or Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import NamedTuple

from kittylab import bootstrap
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.config import MqttSettings
from kittylab.simulator.fleet import SimulatedFleet

FAST = MqttSettings(reconnect_min_seconds=0.1, reconnect_max_seconds=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_bus(address: BrokerAddress, role: str = "test") -> AsyncIterator[MqttBus]:
    bus = MqttBus(address, FAST, role=role)
    task = asyncio.create_task(bus.run())
    try:
        assert await bus.wait_connected(10), f"no MQTT broker at {address.host}:{address.port}"
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker("127.0.0.1", port or free_port())
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def eventually(check: object, within: float = 5.0) -> None:
    """Wait until ``check()`` is truthy; fail with its last value otherwise."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


class LiveLab(NamedTuple):
    bus: MqttBus
    fleet: SimulatedFleet
    wired: bootstrap.Container
    """The container with real drivers on the live bus."""


@contextlib.asynccontextmanager
async def live_lab(container: bootstrap.Container) -> AsyncIterator[LiveLab]:
    """The simulated lab online on an embedded broker: simulators attached and reported,
    and a container whose drivers talk to them over MQTT."""
    port = free_port()
    async with embedded_broker(port), running_bus(BrokerAddress("127.0.0.1", port), "lab") as bus:
        fleet = bootstrap.simulated_fleet(container)
        fleet.attach(bus)
        await asyncio.to_thread(fleet.reload)
        await asyncio.to_thread(fleet.report)
        yield LiveLab(
            bus, fleet, replace(container, drivers=bootstrap.device_drivers(bus), bus=bus)
        )
