"""A real MQTT bus for tests: the embedded broker (amqtt) on a free port, or Mosquitto.

The embedded broker admits only the identities of ``IDENTITIES_FILE`` (issue 13), and the
real Mosquitto runs with the password file and ACL ``kittylab mqtt config`` writes from
them; test clients connect as KittyLab's service and the simulated lab as the simulator
identity."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from kittylab import bootstrap
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.credentials import Identities
from kittylab.adapters.bus.mosquitto import write_config
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.config import MqttSettings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.simulator.fleet import SimulatedFleet
from tests.peers.tls_mosquitto import find_binary

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


@contextlib.asynccontextmanager
async def mosquitto(identities: Identities) -> AsyncIterator[BrokerAddress]:
    """The real Mosquitto with the files ``kittylab mqtt config`` writes, and nothing else."""
    with tempfile.TemporaryDirectory(prefix="kittylab-mosquitto-") as folder:
        directory = Path(folder)
        files = write_config(identities, directory / "kittylab")
        port = free_port()
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"user {getpass.getuser()}\npersistence false\n"
            f"log_dest file {directory / 'mosquitto.log'}\n"
            f"listener {port} 127.0.0.1\n{files.config.read_text()}"
        )
        command = [find_binary("mosquitto"), "-c", str(conf)]
        process = await asyncio.to_thread(subprocess.Popen, command)
        try:
            deadline = time.monotonic() + 15
            while True:
                assert process.poll() is None, "mosquitto exited"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "mosquitto did not listen"
                    await asyncio.sleep(0.05)
            yield BrokerAddress("127.0.0.1", port)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 10)


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
async def live_lab(
    container: bootstrap.Container, broker: str = "embedded"
) -> AsyncIterator[LiveLab]:
    """The simulated lab online on a broker (``embedded``, or ``mosquitto`` with the lab's
    password file and ACL): simulators attached and reported, and a container whose
    drivers talk to them over MQTT."""
    fleet = bootstrap.simulated_fleet(container)
    await asyncio.to_thread(fleet.reload)
    identities = lab_identities(sim.external_id for sim in fleet.devices.values())
    async with contextlib.AsyncExitStack() as stack:
        if broker == "mosquitto":
            address = await stack.enter_async_context(mosquitto(identities))
        else:
            port = free_port()
            address = BrokerAddress("127.0.0.1", port)
            await stack.enter_async_context(embedded_broker(port))
        bus = await stack.enter_async_context(running_bus(address, "lab"))
        await stack.enter_async_context(
            running_bus(address, "simulator", IdentityKind.SIMULATOR, fleet.attach)
        )
        await asyncio.to_thread(fleet.report)
        yield LiveLab(
            bus,
            fleet,
            replace(container, drivers=bootstrap.device_drivers(bus, container.settings), bus=bus),
        )
