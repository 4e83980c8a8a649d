"""A real MQTT bus for tests: the embedded broker (amqtt) on a free port, or Mosquitto.

The embedded broker admits only the identities of ``IDENTITIES_FILE`` (issue 13); test
clients connect as KittyLab's service and the simulated lab as the simulator identity."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from kittylab import bootstrap
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.credentials import Identities
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.config import MqttSettings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.simulator.fleet import SimulatedFleet

FAST = MqttSettings(reconnect_min_seconds=0.1, reconnect_max_seconds=0.5)
IDENTITIES_FILE = Path(tempfile.mkdtemp(prefix="kittylab-bus-")) / "identities.json"


def lab_identities(simulated: Iterable[str] | None = None) -> Identities:
    """KittyLab's own identities for the tests' brokers; ``simulated`` sets the devices
    the simulator identity acts for."""
    lab = Identities.load(IDENTITIES_FILE)
    current = lab.entries.get("kittylab-simulator")
    devices = simulated if simulated is not None else (current.identity.devices if current else ())
    if lab.ensure_own(devices):
        lab.save()
    return lab


def as_identity(address: BrokerAddress, kind: IdentityKind) -> BrokerAddress:
    """``address`` with the credentials of one of KittyLab's own identities."""
    own = lab_identities().own(kind)
    return replace(address, username=own.username, password=own.password)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_bus(
    address: BrokerAddress,
    role: str = "test",
    kind: IdentityKind = IdentityKind.SERVICE,
    attach: Callable[[MqttBus], None] | None = None,
) -> AsyncIterator[MqttBus]:
    """A connected bus; ``attach`` subscribes before it connects, so the subscriptions are
    in place before anyone else can publish (another client's message races them)."""
    if address.username is None:
        address = as_identity(address, kind)
    bus = MqttBus(address, FAST, role=role)
    if attach is not None:
        attach(bus)
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
    lab_identities()
    broker = EmbeddedBroker("127.0.0.1", port or free_port(), identities_file=IDENTITIES_FILE)
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
    address = BrokerAddress("127.0.0.1", port)
    fleet = bootstrap.simulated_fleet(container)
    await asyncio.to_thread(fleet.reload)
    lab_identities(sim.external_id for sim in fleet.devices.values())
    async with (
        embedded_broker(port),
        running_bus(address, "lab") as bus,
        running_bus(address, "simulator", IdentityKind.SIMULATOR, fleet.attach),
    ):
        await asyncio.to_thread(fleet.report)
        yield LiveLab(
            bus,
            fleet,
            replace(container, drivers=bootstrap.device_drivers(bus, container.settings), bus=bus),
        )
