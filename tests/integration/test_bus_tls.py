"""The bus over TLS (issue 13): the embedded broker and the real Mosquitto (with the files
``kittylab mqtt config --tls`` writes) listen with the lab's certificate from ``kittylab tls
init``; KittyLab's client reaches them over ``mqtts://`` verifying it with the lab CA, and a
command crosses; a plain client, or one that does not trust the lab CA, gets nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from kittylab.adapters import tls
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.mosquitto import TlsListener, write_config
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.domain import topics
from kittylab.domain.bus_acl import IdentityKind
from tests.integration.live_bus import (
    IDENTITIES_FILE,
    as_identity,
    eventually,
    free_port,
    lab_identities,
    running_bus,
)
from tests.peers.tls_mosquitto import find_binary

DEVICE = "welding-door"


@pytest.fixture(scope="module")
def lab_tls() -> tls.LabTls:
    lab = tls.lab_tls(Path(tempfile.mkdtemp(prefix="kittylab-bus-tls-")))
    tls.init(lab, ["localhost", "127.0.0.1"])
    return lab


TlsBroker = Callable[[tls.LabTls], contextlib.AbstractAsyncContextManager[int]]


@contextlib.asynccontextmanager
async def embedded(lab: tls.LabTls) -> AsyncIterator[int]:
    lab_identities([DEVICE])
    port = free_port()
    broker = EmbeddedBroker(
        "127.0.0.1", port, identities_file=IDENTITIES_FILE, certificate=lab.server
    )
    await broker.start()
    try:
        yield port
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def mosquitto(lab: tls.LabTls) -> AsyncIterator[int]:
    """The real Mosquitto with ``kittylab mqtt config --tls``'s files and nothing else: its
    only listener is the TLS one."""
    identities = lab_identities([DEVICE])
    with tempfile.TemporaryDirectory(prefix="kittylab-mosquitto-tls-") as folder:
        directory = Path(folder)
        port = free_port()
        files = write_config(
            identities, directory / "kittylab", TlsListener(lab.server, port, "127.0.0.1")
        )
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"user {getpass.getuser()}\npersistence false\n"
            f"log_dest file {directory / 'mosquitto.log'}\n{files.config.read_text()}"
        )
        process = await asyncio.to_thread(
            subprocess.Popen, [find_binary("mosquitto"), "-c", str(conf)]
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                assert process.poll() is None, "mosquitto exited"
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "mosquitto did not listen"
                    await asyncio.sleep(0.05)
            yield port
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 10)


BROKERS: dict[str, TlsBroker] = {"embedded": embedded, "mosquitto": mosquitto}


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> TlsBroker:
    return BROKERS[request.param]


def test_a_command_crosses_the_bus_over_tls_verified_with_the_lab_ca(
    broker: TlsBroker, lab_tls: tls.LabTls
) -> None:
    async def main() -> None:
        async with broker(lab_tls) as port:
            address = BrokerAddress("127.0.0.1", port, tls=True, ca_file=lab_tls.ca_cert)
            received: list[bytes] = []

            def listen(bus: MqttBus) -> None:
                async def take(topic: str, payload: bytes) -> None:
                    received.append(payload)

                bus.subscribe(topics.device_command(DEVICE), take)

            async with (
                running_bus(address, "simulator", IdentityKind.SIMULATOR, listen),
                running_bus(address, "service") as service,
            ):
                await service.publish_now(topics.device_command(DEVICE), {"intent": "door_lock"})
                await eventually(lambda: received)
            assert b"door_lock" in received[0]

    asyncio.run(main())


def test_a_plain_client_or_one_without_the_lab_ca_gets_nowhere(
    broker: TlsBroker, lab_tls: tls.LabTls
) -> None:
    service = as_identity(BrokerAddress("127.0.0.1", 0), IdentityKind.SERVICE)

    async def connect(port: int, context: ssl.SSLContext | None) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            username=service.username,
            password=service.password,
            tls_context=context,
            timeout=3,
        ):
            pass

    async def main() -> None:
        async with broker(lab_tls) as port:
            # Right password, but in the clear: the TLS listener does not speak plain MQTT.
            with pytest.raises(aiomqtt.MqttError):
                await connect(port, None)
            # The system's CAs alone do not vouch for the lab's broker.
            with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
                await connect(port, ssl.create_default_context())
            await connect(port, tls.client_context(lab_tls.ca_cert))

    asyncio.run(main())


def test_mqtt_config_writes_a_tls_listener_with_the_lab_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from kittylab.cli.main import app

    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    missing = runner.invoke(app, ["mqtt", "config", "--out", str(tmp_path / "m"), "--tls"])
    assert missing.exit_code == 1 and "kittylab tls init" in missing.output
    assert runner.invoke(app, ["tls", "init"]).exit_code == 0
    written = runner.invoke(app, ["mqtt", "config", "--out", str(tmp_path / "m"), "--tls"])
    assert written.exit_code == 0, written.output
    conf = (tmp_path / "m" / "kittylab.conf").read_text()
    server = tmp_path / "data" / "tls" / "server.pem"
    assert f"listener 8883\ncertfile {server}\n" in conf
    assert "allow_anonymous false" in conf and "tls_version tlsv1.2" in conf
