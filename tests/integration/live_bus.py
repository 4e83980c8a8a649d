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
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.credentials import Identities
from kittylab.adapters.bus.mosquitto import write_config
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.config import MqttSettings
from kittylab.devices import simulated_lab
from kittylab.devices.ports import DeviceDriver
from kittylab.devices.telemetry_ingest import TelemetryIngest
from kittylab.domain.bus_acl import IdentityKind
from kittylab.simulator.devices import build_simulator
from kittylab.simulator.fleet import SimulatedFleet, Simulator
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


class _ById(MutableMapping[UUID, Simulator]):
    """The fleet's simulators by the devices' database ids (the fleet knows external
    ids only), for tests that hold ids: deleting one stops simulating it."""

    def __init__(self, fleet: SimulatedFleet, ids: dict[UUID, str]) -> None:
        self._fleet, self._ids = fleet, ids

    def __getitem__(self, device_id: UUID) -> Simulator:
        return self._fleet.devices[self._ids[device_id]]

    def __setitem__(self, device_id: UUID, simulator: Simulator) -> None:
        self._fleet.devices[self._ids[device_id]] = simulator

    def __delitem__(self, device_id: UUID) -> None:
        del self._fleet.devices[self._ids[device_id]]

    def __iter__(self) -> Iterator[UUID]:
        return iter([i for i, e in self._ids.items() if e in self._fleet.devices])

    def __len__(self) -> int:
        return sum(1 for e in self._ids.values() if e in self._fleet.devices)


class LabFleet:
    """A test's simulated lab, in the test's process but on the bus all the same: the
    real ``SimulatedFleet`` on a bus client, told its devices by the message
    ``kittylab serve`` publishes (``devices.simulated_lab``), its states stored by the
    server's own ``TelemetryIngest`` (issue 14: nothing writes the database directly).

    ``reload`` and ``report`` block until the fleet followed the list / the ingest stored
    the states, so they run off the event loop (``asyncio.to_thread``)."""

    def __init__(
        self,
        fleet: SimulatedFleet,
        ingest: TelemetryIngest,
        database: Database,
        publisher: MqttBus,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fleet = fleet
        self.ingest = ingest
        self._database = database
        self._publisher = publisher
        self._loop = loop
        self._ids: dict[UUID, str] = {}
        self._base = (ingest.stored, fleet.published)

    @property
    def devices(self) -> _ById:
        return _ById(self.fleet, self._ids)

    def _off_the_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                raise AssertionError("call it with asyncio.to_thread: it waits on the loop")

    def reload(self) -> None:
        """Publish the lab's simulated devices, as the server does, and wait until the
        fleet simulates exactly them."""
        self._off_the_loop()
        with self._database.unit_of_work() as session:
            specs = simulated_lab.read(session)
            rows = session.execute(
                select(Device.id, Device.external_id).where(
                    Device.integration == simulated_lab.SIMULATED, Device.retired_at.is_(None)
                )
            )
            ids = {row.id: row.external_id for row in rows}
        self._ids = ids
        lab_identities(d.external_id for d in specs)
        simulated_lab.publish(self._publisher, specs)
        wanted = {d.external_id for d in specs}
        _wait_for(lambda: set(self.fleet.devices) == wanted, "the fleet to follow the lab")
        self.settle()  # new devices report at once

    def report(self) -> int:
        """Publish every device's state and wait until the ingest stored them."""
        self._off_the_loop()
        count = self.fleet.report()
        self.settle()
        return count

    def settle(self) -> None:
        """Wait until the ingest stored as many states as the fleet published: no report
        is still on its way (a test that then marks devices offline means it)."""
        self._off_the_loop()
        stored, published = self._base

        def caught_up() -> bool:
            return self.ingest.stored - stored >= self.fleet.published - published

        _wait_for(caught_up, "the published states to be stored")


def _wait_for(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within} s for {what}")
        time.sleep(0.01)


@contextlib.asynccontextmanager
async def lab_fleet(
    container: bootstrap.Container,
    bus: MqttBus,
    simulators: MqttBus | None = None,
    ingest: TelemetryIngest | None = None,
) -> AsyncIterator[LabFleet]:
    """The lab's simulated fleet on ``simulators`` (``bus`` when not given), reloaded and
    reported once, with an ingest on ``bus`` storing what it publishes (the server's
    part; ``ingest`` when it is attached already)."""
    if ingest is None:
        ingest = TelemetryIngest(container.database, container.clock)
        ingest.attach(bus)
    fleet = SimulatedFleet(build_simulator, bootstrap.command_verifier(container.settings))
    fleet.attach(simulators or bus)
    storing = asyncio.create_task(ingest.run())
    lab = LabFleet(fleet, ingest, container.database, bus, asyncio.get_running_loop())
    try:
        await asyncio.to_thread(lab.reload)
        await asyncio.to_thread(lab.report)
        yield lab
    finally:
        storing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await storing


class LiveLab(NamedTuple):
    bus: MqttBus
    fleet: LabFleet
    wired: bootstrap.Container
    """The container with real drivers on the live bus."""


@contextlib.asynccontextmanager
async def live_lab(
    container: bootstrap.Container, broker: str = "embedded"
) -> AsyncIterator[LiveLab]:
    """The simulated lab online on a broker (``embedded``, or ``mosquitto`` with the lab's
    password file and ACL): simulators on their own client with the simulator identity,
    their states stored by the ingest, and a container whose drivers talk to them over
    MQTT."""
    with container.database.unit_of_work() as session:
        simulated = [d.external_id for d in simulated_lab.read(session)]
    identities = lab_identities(simulated)
    async with contextlib.AsyncExitStack() as stack:
        if broker == "mosquitto":
            address = await stack.enter_async_context(mosquitto(identities))
        else:
            port = free_port()
            address = BrokerAddress("127.0.0.1", port)
            await stack.enter_async_context(embedded_broker(port))
        # Everything on the server's client subscribes before it connects, as in the
        # server: a subscription made later would have the broker send the retained
        # states again, and the ingest store them again.
        drivers: dict[str, DeviceDriver] = {}
        ingest = TelemetryIngest(container.database, container.clock)

        def wire(bus: MqttBus) -> None:
            drivers.update(bootstrap.device_drivers(bus, container.settings))
            ingest.attach(bus)

        bus = await stack.enter_async_context(running_bus(address, "lab", attach=wire))
        simulators = await stack.enter_async_context(
            running_bus(address, "simulator", IdentityKind.SIMULATOR)
        )
        fleet = await stack.enter_async_context(lab_fleet(container, bus, simulators, ingest))
        yield LiveLab(bus, fleet, replace(container, drivers=drivers, bus=bus))


def bring_online(container: bootstrap.Container) -> None:
    """The lab's simulated devices report once over the bus, and are stored (online)."""

    async def report() -> None:
        async with live_lab(container):
            pass

    asyncio.run(report())
