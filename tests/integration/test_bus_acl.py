"""The bus admits only the lab's identities and enforces the topic ACL (issue 13, hole 1).

The demo lab's simulators listen on the broker as the simulator identity; an attacker on
the bus tries what was reproduced against ``kittylab serve``: an anonymous client, and a
device with a credential of its own, publish ``door_unlock`` to the welding-bay door and
``power_on`` to the welder. The door must stay locked and the welder off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from kittylab import bootstrap
from kittylab.adapters.bus.credentials import Credential, Identities
from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.devices import simulated_lab
from kittylab.domain import topics
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.enums import DeviceKind
from kittylab.domain.simulated_lab import SimulatedDeviceSpec, encode
from kittylab.simulator.devices import build_simulator
from kittylab.simulator.fleet import SimulatedFleet
from tests.integration.live_bus import (
    IDENTITIES_FILE,
    embedded_broker,
    eventually,
    free_port,
    lab_identities,
    mosquitto,
    running_bus,
)
from tests.integration.print_lab import apply_demo_lab

DOOR, WELDER, CNC_DOOR, LIGHTS = "welding-door", "welder-power", "cnc-door", "welding-lights"


def command(container: bootstrap.Container, device: str, intent: str) -> dict[str, Any]:
    """A command signed with the lab's key, as KittyLab sends it (a fresh id each time): in
    these tests only the broker's ACL stands between it and the device."""
    signer = bootstrap.command_signer(container.settings)
    return signer.sign(secrets.token_hex(8), device, intent, {})


@dataclass
class Lab:
    address: BrokerAddress
    fleet: SimulatedFleet
    cnc_door: Credential
    """A real device's credential: the attacker took the CNC door's firmware apart."""
    detector: Credential
    """A print-failure detector's credential."""

    def state(self, external_id: str) -> dict[str, Any]:
        return self.fleet.devices[external_id].snapshot()


@contextlib.asynccontextmanager
async def raw_client(
    lab: Lab, who: Credential | None, will: aiomqtt.Will | None = None
) -> AsyncIterator[aiomqtt.Client]:
    """A client outside KittyLab, as an attacker on the LAN would run."""
    async with aiomqtt.Client(
        lab.address.host,
        lab.address.port,
        username=who.username if who else None,
        password=who.password if who else None,
        will=will,
        timeout=5,
    ) as c:
        yield c


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def vanish_leaving_a_will(lab: Lab, who: Credential, topic: str, will: dict[str, Any]) -> None:
    """An MQTT 3.1.1 CONNECT with a will (QoS 1), then the socket closed without a
    DISCONNECT, so a broker that admitted it publishes the will."""
    payload = (
        _string(b"vanishing-client")
        + _string(topic.encode())
        + _string(json.dumps(will).encode())
        + _string(who.username.encode())
        + _string(who.password.encode())
    )
    flags = 0x80 | 0x40 | 0x08 | 0x04 | 0x02  # user, password, will QoS 1, will, clean
    body = _string(b"MQTT") + bytes([4, flags, 0, 60]) + payload
    assert len(body) < 128 * 128
    length = (
        bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) if len(body) > 127 else bytes([len(body)])
    )
    with socket.create_connection((lab.address.host, lab.address.port), timeout=5) as raw:
        raw.sendall(b"\x10" + length + body)
        with contextlib.suppress(OSError):
            raw.recv(4)  # CONNACK, or the connection closed by a refusing broker
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST


Broker = Callable[[Identities], contextlib.AbstractAsyncContextManager[BrokerAddress]]


@contextlib.asynccontextmanager
async def embedded(_: Identities) -> AsyncIterator[BrokerAddress]:
    port = free_port()
    async with embedded_broker(port):
        yield BrokerAddress("127.0.0.1", port)


def run_lab(
    container: bootstrap.Container,
    database: Database,
    demo_lab_path: Path,
    broker: Broker,
    scenario: Callable[[Lab], Awaitable[None]],
) -> None:
    """The demo lab's simulators online on ``broker`` as the simulator identity, with the
    CNC door given a device credential; then ``scenario``."""
    apply_demo_lab(container, database, demo_lab_path)

    async def main() -> None:
        with database.unit_of_work() as s:
            devices = simulated_lab.read(s)
        lab = lab_identities(d.external_id for d in devices)
        cnc_door = lab.issue_device(CNC_DOOR)
        detector = lab.issue_detector("obico")
        lab.save()
        fleet = SimulatedFleet(build_simulator, bootstrap.command_verifier(container.settings))
        async with (
            broker(lab) as address,
            running_bus(address, "simulator", IdentityKind.SIMULATOR, fleet.attach),
            running_bus(address, "service") as service,
        ):
            # The simulators learn their devices from the server's message, as in serve.
            simulated_lab.publish(service, devices)
            await eventually(lambda: len(fleet.devices) == len(devices))
            fleet.report()
            await scenario(Lab(address, fleet, cnc_door, detector))

    asyncio.run(main())


BROKERS: dict[str, Broker] = {"embedded": embedded, "mosquitto": mosquitto}


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Broker:
    return BROKERS[request.param]


async def settle() -> None:
    """Long enough for a command the broker let through to reach a simulator."""
    await asyncio.sleep(0.5)


def test_an_anonymous_client_cannot_unlock_a_door_or_power_the_welder(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    async def scenario(lab: Lab) -> None:
        assert lab.state(DOOR)["locked"] is True
        with contextlib.suppress(aiomqtt.MqttError):  # refused at connect (the fix)
            async with raw_client(lab, None) as attacker:
                await attacker.publish(
                    topics.device_command(DOOR),
                    json.dumps(command(container, DOOR, "door_unlock")),
                    qos=1,
                )
                await attacker.publish(
                    topics.device_command(WELDER),
                    json.dumps(command(container, WELDER, "power_on")),
                    qos=1,
                )
        await settle()
        assert lab.state(DOOR)["locked"] is True
        assert lab.state(WELDER)["on"] is False

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_anonymous_and_wrong_password_clients_are_refused_at_connect(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    async def scenario(lab: Lab) -> None:
        for who in (None, Credential(lab.cnc_door.username, "guess"), Credential("x", "y")):
            with pytest.raises(aiomqtt.MqttError):
                async with raw_client(lab, who):
                    pass

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_a_device_cannot_command_another_device_nor_leave_a_command_as_its_will(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    async def scenario(lab: Lab) -> None:
        async with raw_client(lab, lab.cnc_door) as device:
            await device.publish(
                topics.device_command(DOOR),
                json.dumps(command(container, DOOR, "door_unlock")),
                qos=1,
            )
            await device.publish(
                topics.device_command(WELDER),
                json.dumps(command(container, WELDER, "power_on")),
                qos=1,
            )
            await device.publish(
                topics.device_command(CNC_DOOR),
                json.dumps(command(container, CNC_DOOR, "door_unlock")),
                qos=1,
            )
            # Nor can it tell the simulator which devices to simulate (issue 14).
            ghost = SimulatedDeviceSpec("ghost-door", DeviceKind.DOOR, "cnc-room", "ghost")
            await device.publish(
                topics.SIMULATED_DEVICES, json.dumps(encode([ghost])), qos=1, retain=True
            )
        # Its last will names the welder's cmd, and it vanishes without a DISCONNECT: the
        # embedded broker refuses the connect, Mosquitto never publishes the will.
        await asyncio.to_thread(
            vanish_leaving_a_will,
            lab,
            lab.cnc_door,
            topics.device_command(WELDER),
            command(container, WELDER, "power_on"),
        )
        await settle()
        assert lab.state(DOOR)["locked"] is True
        assert lab.state(WELDER)["on"] is False
        assert lab.state(CNC_DOOR)["locked"] is True  # not even its own cmd
        assert "ghost-door" not in lab.fleet.devices and DOOR in lab.fleet.devices

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_the_services_own_client_still_commands_the_simulators(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    async def scenario(lab: Lab) -> None:
        async with running_bus(lab.address, "service") as service:
            light_on = command(container, LIGHTS, "light_on")
            await service.publish_now(topics.device_command(LIGHTS), light_on)
            await settle()
        assert lab.state(LIGHTS)["on"] is True
        # The vanishing client of the will test does leave a will that is published, when
        # its identity may: the refusal there is the ACL's, not the test's.
        service = Identities.load(IDENTITIES_FILE).own(IdentityKind.SERVICE)
        await asyncio.to_thread(
            vanish_leaving_a_will,
            lab,
            service,
            topics.device_command(WELDER),
            command(container, WELDER, "power_on"),
        )
        await settle()
        assert lab.state(WELDER)["on"] is True

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_a_device_cannot_publish_another_devices_state_nor_read_the_conversations(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    async def scenario(lab: Lab) -> None:
        seen: list[tuple[str, bytes]] = []

        async def collect(topic: str, payload: bytes) -> None:
            seen.append((topic, payload))

        async with running_bus(lab.address, "service") as service:
            service.subscribe(topics.device_state(DOOR), collect)
            await service.publish_now(
                topics.conversation_context("c1"), {"secret": "context"}, retain=True
            )
            await settle()
            seen.clear()
            async with raw_client(lab, lab.cnc_door) as device:
                await device.subscribe("kitty/#")
                await device.publish(
                    topics.device_state(DOOR), json.dumps({"locked": False}), qos=1, retain=True
                )
                await device.publish(topics.device_state(CNC_DOOR), b'{"locked":true}', qos=1)
                heard: list[str] = []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.7):
                        async for message in device.messages:
                            heard.append(
                                f"{message.topic.value} {message.payload!r} {message.retain}"
                            )
            await settle()
        assert not [p for _, p in seen if b"false" in p], "a spoofed state reached the service"
        assert heard == [], f"a device read {heard}"

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_a_monitor_event_reaches_kittylab_only_from_a_detector(
    container: bootstrap.Container, database: Database, demo_lab_path: Path, broker: Broker
) -> None:
    """A monitor event pauses a print and becomes evidence: a device, and even KittyLab's
    own worker identity, cannot publish one; a detector can."""

    async def scenario(lab: Lab) -> None:
        heard: list[bytes] = []

        async def collect(_: str, payload: bytes) -> None:
            heard.append(payload)

        worker = Identities.load(IDENTITIES_FILE).own(IdentityKind.WORKER)
        async with running_bus(lab.address, "service") as service:
            service.subscribe(topics.MONITOR_WILDCARD, collect)
            await settle()
            for who, said in ((lab.cnc_door, b"device"), (worker, b"worker")):
                async with raw_client(lab, who) as client:
                    await client.publish(topics.monitor("job1"), said, qos=1)
            async with raw_client(lab, lab.detector) as client:
                await client.publish(topics.monitor("job1"), b"detector", qos=1)
            await settle()
        assert heard == [b"detector"]

    run_lab(container, database, demo_lab_path, broker, scenario)


def test_the_identities_file_is_private() -> None:
    lab_identities()
    assert IDENTITIES_FILE.stat().st_mode & 0o077 == 0


def test_mqtt_commands_issue_a_device_credential_once_and_write_mosquittos_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from kittylab.adapters.bus.credentials import verify_password
    from kittylab.cli.main import app

    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    issued = runner.invoke(app, ["mqtt", "device", "shop-light"])
    assert issued.exit_code == 0, issued.output
    password = issued.output.split("password: ")[1].split()[0]
    written = runner.invoke(app, ["mqtt", "config", "--out", str(tmp_path / "mosq")])
    assert written.exit_code == 0, written.output

    lines = dict(
        line.split(":", 1) for line in (tmp_path / "mosq" / "passwd").read_text().splitlines()
    )
    assert verify_password(password, lines["device-shop-light"])
    assert set(lines) >= {"kittylab-service", "kittylab-worker", "kittylab-simulator"}
    acl = (tmp_path / "mosq" / "acl").read_text()
    assert "user device-shop-light\ntopic write kitty/devices/shop-light/state\n" in acl
    assert "topic read kitty/devices/shop-light/cmd\n" in acl
    assert password not in (tmp_path / "data" / "mqtt" / "identities.json").read_text()
    bad = runner.invoke(app, ["mqtt", "device", "a/b"])
    assert bad.exit_code != 0 and "external_id" in bad.output
