"""The Bambu Lab LAN-mode driver against a real Mosquitto with TLS and password auth, and
a protocol-level printer peer on it (``tests/peers``). No real printer can run here: this is
a contract test of the documented MQTT protocol."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from kittylab.adapters.devices.bambu import BambuDriver
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, ValidationFailed
from tests.peers.bambu_ftps_peer import BambuFtpsPeer
from tests.peers.bambu_peer import BambuPrinterPeer
from tests.peers.tls_mosquitto import TlsMosquitto, free_port, make_authority, start_tls_mosquitto

SERIAL = "01S00C371400123"
ACCESS_CODE = "24681357"
CODE_VARIABLE = "KL_TEST_BAMBU_ACCESS_CODE"
T = TypeVar("T")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMosquitto]:
    server = start_tls_mosquitto(
        tmp_path_factory.mktemp("bambu-broker"),
        server_name=SERIAL,
        username="bblp",
        password=ACCESS_CODE,
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _access_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CODE_VARIABLE, ACCESS_CODE)


def printer(broker: TlsMosquitto, **connection: Any) -> DeviceTarget:
    base: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "serial": SERIAL,
        "access_code": f"${{{CODE_VARIABLE}}}",
        "ca_file": str(broker.ca_file),
    }
    base.update(connection)
    return DeviceTarget(
        id=uuid4(),
        external_id="bambu-x1c",
        kind=DeviceKind.PRINTER,
        integration="bambu",
        connection={k: v for k, v in base.items() if v is not None},
    )


def peer_on(broker: TlsMosquitto, **options: Any) -> BambuPrinterPeer:
    return BambuPrinterPeer(
        host=broker.host,
        port=broker.port,
        ca_file=broker.ca_file,
        serial=SERIAL,
        access_code=ACCESS_CODE,
        **options,
    )


@contextlib.asynccontextmanager
async def connected(
    broker: TlsMosquitto, *, reply_timeout: float = 5.0, **peer_options: Any
) -> AsyncIterator[tuple[BambuDriver, BambuPrinterPeer]]:
    """A printer peer on the broker and a driver (closed afterwards) to talk to it."""
    driver = BambuDriver(timeout=3, reply_timeout=reply_timeout)
    async with peer_on(broker, **peer_options) as peer:
        try:
            yield driver, peer
        finally:
            await driver.close()


def loopback_printer(external_id: str, **connection: Any) -> DeviceTarget:
    """A printer at 127.0.0.1 with no broker of the module behind it."""
    return DeviceTarget(
        id=uuid4(),
        external_id=external_id,
        kind=DeviceKind.PRINTER,
        integration="bambu",
        connection={
            "host": "127.0.0.1",
            "serial": SERIAL,
            "access_code": f"${{{CODE_VARIABLE}}}",
            "insecure_tls": True,
            **connection,
        },
    )


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        # A hang is a failure, not a stuck CI run.
        return await asyncio.wait_for(scenario(), 60)

    return asyncio.run(bounded())


async def wait_for_state(
    driver: BambuDriver,
    device: DeviceTarget,
    predicate: Callable[[dict[str, Any]], bool],
    within: float = 10.0,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        state = await driver.state(device)
        if predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"state never matched; last: {state}")
        await asyncio.sleep(0.05)


def test_pause_resume_and_stop_move_gcode_state_and_state_reports_the_phase(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            assert (await driver.state(device))["state"] == "idle"
            await driver.send(device, "print_start", {"file": "cube.3mf"})
            printing = await wait_for_state(driver, device, lambda s: s["state"] == "printing")
            # The project, not the plate inside it: what print_start named.
            assert printing["file"] == "cube.3mf"
            assert peer.status["gcode_file"] == "/data/Metadata/plate_1.gcode"

            await driver.send(device, "print_pause", {})
            assert peer.status["gcode_state"] == "PAUSE"
            await wait_for_state(driver, device, lambda s: s["state"] == "paused")

            await driver.send(device, "print_resume", {})
            await wait_for_state(driver, device, lambda s: s["state"] == "printing")

            await driver.send(device, "print_cancel", {})
            state = await wait_for_state(driver, device, lambda s: s["state"] != "printing")
            assert state["state"] == "cancelled"
            assert state["failure"] is None
            assert peer.status["gcode_state"] == "FAILED"
        sent = [(r["family"], r["command"]) for r in peer.requests]
        assert sent[1:] == [
            ("print", "project_file"),
            ("print", "pause"),
            ("print", "resume"),
            ("print", "stop"),
        ]
        assert sent[0] == ("pushing", "pushall")
        ids = [r["sequence_id"] for r in peer.requests]
        assert all(isinstance(i, str) for i in ids)
        assert len(set(ids)) == len(ids)

    run(scenario)


def test_state_of_a_running_print_has_progress_temperatures_file_and_time_left(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker, print_seconds=2.0) as (driver, peer):
            # A plain name: the driver puts it under the card's G-code root.
            await driver.send(device, "print_start", {"file": "benchy.gcode"})
            running = await wait_for_state(
                driver, device, lambda s: s["state"] == "printing" and s["progress"] > 0
            )
            assert running["file"] == "/sdcard/benchy.gcode"
            assert running["nozzle"]["target"] == 220.0
            assert running["bed"]["target"] == 55.0
            assert running["nozzle"]["actual"] > 200
            assert running["seconds_left"] is not None
            done = await wait_for_state(driver, device, lambda s: s["state"] == "completed")
            assert done["progress"] == 1.0
            assert done["nozzle"]["target"] == 0.0
            assert done["failure"] is None
        assert peer.requests_for("gcode_file")[0]["param"] == "/sdcard/benchy.gcode"

    run(scenario)


def test_heat_sets_targets_with_gcode_lines_and_cooldown_clears_them(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            await driver.send(device, "printer_heat", {"nozzle": 200, "bed": 60})
            heated = await wait_for_state(driver, device, lambda s: s["nozzle"]["target"] == 200.0)
            assert heated["bed"]["target"] == 60.0
            assert heated["state"] == "idle"
            await driver.send(device, "printer_heat", {"bed": 70})
            await wait_for_state(driver, device, lambda s: s["bed"]["target"] == 70.0)
            await driver.send(device, "printer_cooldown", {})
            cold = await wait_for_state(
                driver,
                device,
                lambda s: s["nozzle"]["target"] == 0.0 and s["bed"]["target"] == 0.0,
            )
            assert cold["state"] == "idle"
        lines = [r["param"] for r in peer.requests_for("gcode_line")]
        assert lines == ["M104 S200\nM140 S60\n", "M140 S70\n", "M104 S0\nM140 S0\n"]

    run(scenario)


def test_requests_the_printer_answers_with_fail_raise_device_refused_with_its_reason(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            with pytest.raises(DeviceRefused, match="refused pause: cannot pause"):
                await driver.send(device, "print_pause", {})
            with pytest.raises(DeviceRefused, match="refused resume"):
                await driver.send(device, "print_resume", {})
            with pytest.raises(DeviceRefused, match="file not found"):
                await driver.send(device, "print_start", {"file": "missing.3mf"})
            await driver.send(device, "print_start", {"file": "cube.3mf"})
            with pytest.raises(DeviceRefused, match="busy"):
                await driver.send(device, "print_start", {"file": "cube.3mf"})
            # The driver still works after refusals.
            assert (await driver.state(device))["state"] in ("heating", "printing")
        assert peer.status["gcode_state"] in ("PREPARE", "RUNNING")

    run(scenario)


def test_an_intent_a_bambu_printer_cannot_carry_out_is_refused_without_sending(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        async with connected(broker) as (driver, peer):
            with pytest.raises(DeviceRefused, match="cannot light_on"):
                await driver.send(printer(broker), "light_on", {})
        assert peer.requests == []

    run(scenario)


def test_concurrent_requests_to_one_printer_each_get_their_own_reply(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            await driver.state(device)
            results = await asyncio.gather(
                driver.send(device, "printer_heat", {"nozzle": 180}),
                driver.send(device, "print_pause", {}),
                driver.send(device, "printer_heat", {"bed": 50}),
                driver.send(device, "print_resume", {}),
                return_exceptions=True,
            )
        assert results[0] is None
        assert results[2] is None
        assert isinstance(results[1], DeviceRefused)
        assert "pause" in str(results[1])
        assert isinstance(results[3], DeviceRefused)
        assert "resume" in str(results[3])
        assert peer.status["nozzle_target_temper"] == 180.0
        assert peer.status["bed_target_temper"] == 50.0

    run(scenario)


def test_status_request_asks_for_a_full_report_without_waiting_for_an_echo(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker, reply_timeout=30) as (driver, peer):
            peer.running = False
            await driver.state(device)
            peer.status["chamber_temper"] = 31.0  # changed without a report
            await asyncio.wait_for(driver.send(device, "printer_status", {}), 5)
            await asyncio.sleep(0.2)
        assert len(peer.requests_for("pushall")) == 2  # on connect, and on request
        assert peer.reports[-1]["print"]["chamber_temper"] == 31.0

    run(scenario)


def test_a_changed_access_code_reconnects_instead_of_reusing_the_old_session(
    broker: TlsMosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, _):
            assert (await driver.state(device))["state"] == "idle"
            monkeypatch.setenv(CODE_VARIABLE, "11112222")  # LAN mode was toggled
            with pytest.raises(DeviceUnavailable, match="refused the LAN access code"):
                await driver.state(device)
            monkeypatch.setenv(CODE_VARIABLE, ACCESS_CODE)
            assert (await driver.state(device))["state"] == "idle"

    run(scenario)


def test_one_driver_serves_calls_from_successive_event_loops(broker: TlsMosquitto) -> None:
    driver = BambuDriver(timeout=3)
    device = printer(broker)

    async def first() -> None:
        async with peer_on(broker):
            await driver.send(device, "printer_heat", {"nozzle": 120})
            await wait_for_state(driver, device, lambda s: s["nozzle"]["target"] == 120.0)

    async def second() -> None:
        try:
            async with peer_on(broker):
                # The first loop's connection is gone with it; this opens a new one.
                await driver.send(device, "printer_heat", {"nozzle": 130})
                await wait_for_state(driver, device, lambda s: s["nozzle"]["target"] == 130.0)
        finally:
            await driver.close()

    run(first)
    run(second)


def test_a_request_the_printer_does_not_echo_returns_after_the_reply_timeout(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker, reply_timeout=0.3) as (driver, peer):
            peer.silent_commands.add("project_file")
            await driver.send(device, "print_start", {"file": "cube.3mf"})
            await wait_for_state(driver, device, lambda s: s["state"] != "idle")

    run(scenario)


def test_partial_reports_merge_into_the_cached_full_state(broker: TlsMosquitto) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            peer.running = False  # only the reports below change anything
            full = await driver.state(device)
            assert full["state"] == "idle"
            assert full["bed"] == {"actual": 25.0, "target": 0.0}

            await peer.publish_raw(
                {"print": {"command": "push_status", "msg": 1, "nozzle_temper": 181.5}}
            )
            merged = await wait_for_state(driver, device, lambda s: s["nozzle"]["actual"] == 181.5)
            assert merged["state"] == "idle"
            assert merged["bed"] == {"actual": 25.0, "target": 0.0}
            assert merged["nozzle"]["target"] == 0.0

            await peer.publish_raw(
                {
                    "print": {
                        "command": "push_status",
                        "gcode_state": "RUNNING",
                        "gcode_file": "part.gcode",
                        "mc_percent": 42,
                        "upload": {"progress": 5},
                    }
                }
            )
            running = await wait_for_state(driver, device, lambda s: s["state"] == "printing")
            assert running["progress"] == pytest.approx(0.42)
            assert running["file"] == "part.gcode"
            assert running["nozzle"]["actual"] == 181.5

    run(scenario)


def test_a_failed_print_reports_the_firmware_error_and_a_stop_reads_as_cancelled(
    broker: TlsMosquitto,
) -> None:
    async def scenario() -> None:
        device = printer(broker)
        async with connected(broker) as (driver, peer):
            await driver.send(device, "print_start", {"file": "cube.3mf"})
            await wait_for_state(driver, device, lambda s: s["state"] != "idle")
            await peer.fail_print(0x07008002)
            failed = await wait_for_state(driver, device, lambda s: s["state"] == "failed")
            assert failed["failure"] == "print error 0700-8002"

    run(scenario)


def test_wrong_access_code_is_device_unavailable_and_the_code_is_never_logged(
    broker: TlsMosquitto, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "13572468"
    monkeypatch.setenv(CODE_VARIABLE, wrong)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        try:
            with pytest.raises(DeviceUnavailable, match="refused the LAN access code") as err:
                await driver.state(printer(broker))
            assert wrong not in str(err.value)
        finally:
            await driver.close()

    run(scenario)
    assert wrong not in caplog.text
    assert ACCESS_CODE not in caplog.text


def test_unset_access_code_variable_is_device_unavailable_naming_the_variable(
    broker: TlsMosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CODE_VARIABLE)

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        try:
            with pytest.raises(DeviceUnavailable, match=CODE_VARIABLE):
                await driver.send(printer(broker), "print_pause", {})
        finally:
            await driver.close()

    run(scenario)


def test_untrusted_certificate_without_insecure_tls_is_device_unavailable(
    broker: TlsMosquitto, tmp_path: Path
) -> None:
    stranger = make_authority(tmp_path, "Some Other CA")

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        try:
            # Neither the system's CAs nor a CA that did not sign it trust the printer.
            with pytest.raises(DeviceUnavailable, match="certificate not trusted"):
                await driver.state(printer(broker, ca_file=None))
            with pytest.raises(DeviceUnavailable, match="certificate not trusted"):
                await driver.state(printer(broker, ca_file=str(stranger.pem_path)))
            # The right CA, but the certificate names another printer's serial.
            with pytest.raises(DeviceUnavailable, match="certificate not trusted"):
                await driver.state(printer(broker, serial="01P00A000000001"))
        finally:
            await driver.close()

    run(scenario)


def test_insecure_tls_accepts_the_printers_self_signed_certificate(broker: TlsMosquitto) -> None:
    async def scenario() -> None:
        device = printer(broker, ca_file=None, insecure_tls=True)
        async with connected(broker) as (driver, _):
            assert (await driver.state(device))["state"] == "idle"
            await driver.send(device, "printer_heat", {"nozzle": 90})
            await wait_for_state(driver, device, lambda s: s["nozzle"]["target"] == 90.0)

    run(scenario)


def test_no_broker_listening_is_device_unavailable_at_once() -> None:
    async def scenario() -> None:
        closed_port = free_port()
        device = loopback_printer("bambu-gone", port=closed_port)
        driver = BambuDriver(timeout=2)
        try:
            with pytest.raises(DeviceUnavailable, match="unreachable"):
                await asyncio.wait_for(driver.send(device, "print_pause", {}), 2)
        finally:
            await driver.close()

    run(scenario)


def test_a_printer_that_accepts_tcp_but_never_answers_is_device_unavailable_after_the_timeout() -> (
    None
):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()

    async def scenario() -> None:
        device = loopback_printer("bambu-mute", port=listener.getsockname()[1])
        driver = BambuDriver(timeout=0.5)
        try:
            with pytest.raises(DeviceUnavailable, match="did not answer in time"):
                await asyncio.wait_for(driver.state(device), 5)
        finally:
            await driver.close()

    try:
        run(scenario)
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def test_a_broker_that_goes_down_makes_calls_unavailable_until_it_returns(
    tmp_path: Path,
) -> None:
    own = start_tls_mosquitto(
        tmp_path / "broker", server_name=SERIAL, username="bblp", password=ACCESS_CODE
    )

    async def scenario() -> None:
        device = printer(own)
        driver = BambuDriver(timeout=2)
        try:
            async with peer_on(own):
                assert (await driver.state(device))["state"] == "idle"
                own.stop()
                with pytest.raises(DeviceUnavailable):
                    await wait_for_state(driver, device, lambda s: False, within=5)
            with pytest.raises(DeviceUnavailable, match="unreachable"):
                await driver.send(device, "print_pause", {})
            own.start()
            async with peer_on(own):
                await driver.send(device, "printer_heat", {"nozzle": 150})
                await wait_for_state(driver, device, lambda s: s["nozzle"]["target"] == 150.0)
        finally:
            await driver.close()

    try:
        run(scenario)
    finally:
        own.stop()


def ftps_on(broker: TlsMosquitto, card: Path, **options: Any) -> BambuFtpsPeer:
    return BambuFtpsPeer(
        cert_file=broker.cert_file,
        key_file=broker.key_file,
        access_code=ACCESS_CODE,
        card=card,
        **options,
    )


def test_upload_stores_the_file_on_the_card_over_implicit_ftps_replacing_one_of_that_name(
    broker: TlsMosquitto, tmp_path: Path
) -> None:
    first = tmp_path / "first.3mf"
    first.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 400)
    second = tmp_path / "second.3mf"
    second.write_bytes(b"PK\x03\x04 a smaller cube")

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        async with ftps_on(broker, tmp_path / "card") as ftps:
            device = printer(broker, ftps_port=ftps.port)
            try:
                await driver.upload(device, "cube.3mf", first)
                assert (tmp_path / "card" / "cube.3mf").read_bytes() == first.read_bytes()
                await driver.upload(device, "cube.3mf", second)
                assert (tmp_path / "card" / "cube.3mf").read_bytes() == second.read_bytes()
            finally:
                await driver.close()
        # Implicit TLS (no AUTH), protected data channel, binary passive transfer.
        assert "AUTH TLS" not in ftps.commands
        assert ftps.commands[:5] == ["USER bblp", "PASS", "PBSZ 0", "PROT P", "TYPE I"]
        assert ftps.commands.count("STOR cube.3mf") == 2

    run(scenario)


def test_upload_with_a_wrong_access_code_or_an_untrusted_certificate_is_device_unavailable(
    broker: TlsMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gcode = tmp_path / "part.gcode"
    gcode.write_text("G28\n")

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        async with ftps_on(broker, tmp_path / "card") as ftps:
            try:
                with pytest.raises(DeviceUnavailable, match="certificate not trusted"):
                    await driver.upload(
                        printer(broker, ftps_port=ftps.port, ca_file=None), "part.gcode", gcode
                    )
                monkeypatch.setenv(CODE_VARIABLE, "00000000")
                with pytest.raises(DeviceUnavailable, match="refused the LAN access code"):
                    await driver.upload(printer(broker, ftps_port=ftps.port), "part.gcode", gcode)
            finally:
                await driver.close()
        assert not (tmp_path / "card" / "part.gcode").exists()

    run(scenario)


def test_upload_the_printer_cannot_store_is_device_refused(
    broker: TlsMosquitto, tmp_path: Path
) -> None:
    big = tmp_path / "big.gcode"
    big.write_bytes(b";" * 5000)

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        async with ftps_on(broker, tmp_path / "card", card_size=1000) as ftps:
            try:
                with pytest.raises(DeviceRefused, match="552"):
                    await driver.upload(printer(broker, ftps_port=ftps.port), "big.gcode", big)
            finally:
                await driver.close()

    run(scenario)


def test_upload_with_no_file_server_listening_is_device_unavailable(tmp_path: Path) -> None:
    gcode = tmp_path / "part.gcode"
    gcode.write_text("G28\n")

    async def scenario() -> None:
        device = loopback_printer("bambu-gone", ftps_port=free_port())
        driver = BambuDriver(timeout=2)
        with pytest.raises(DeviceUnavailable, match="FTPS"):
            await driver.upload(device, "part.gcode", gcode)

    run(scenario)


# -- names that stay names (issue 11) ------------------------------------------------------

HOSTILE_NAMES = {
    "traversal": "../../etc/x.3mf",
    "absolute": "/usb/benchy.gcode",
    "folder": "cache/cube.3mf",
    "newline": "cube.3mf\nM104 S300",
    "url": "x.3mf?url=ftp://evil.example/y",
    "encoded-slash": "..%2Fcube.3mf",
    "backslash": "..\\cube.3mf",
    "quote": 'cube".3mf',
    "nul": "cube\u0000.3mf",
}


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_print_start_of_anything_but_a_plain_file_name_publishes_nothing(
    broker: TlsMosquitto, name: str
) -> None:
    async def scenario() -> None:
        async with connected(broker) as (driver, peer):
            with pytest.raises(DeviceRefused, match="bambu-x1c: print file name refused"):
                await driver.send(printer(broker), "print_start", {"file": name})
            assert peer.requests == []
            assert peer.status["gcode_state"] == "IDLE"

    run(scenario)


@pytest.mark.parametrize("payload", [{"nozzle": float("nan")}, {"bed": "60\nM104 S300"}])
def test_heat_with_a_target_that_is_not_a_temperature_publishes_nothing(
    broker: TlsMosquitto, payload: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with connected(broker) as (driver, peer):
            with pytest.raises(DeviceRefused, match="must be a temperature"):
                await driver.send(printer(broker), "printer_heat", payload)
            assert peer.requests == []

    run(scenario)


@pytest.mark.parametrize(
    "name", ["../escape.3mf", "cache/cube.3mf", "a\r\nDELE cube.3mf", "-x.gcode", "%2e%2e%2fx"]
)
def test_upload_under_anything_but_a_plain_file_name_never_reaches_the_file_server(
    broker: TlsMosquitto, tmp_path: Path, name: str
) -> None:
    source = tmp_path / "cube.3mf"
    source.write_bytes(b"PK\x03\x04 a cube")

    async def scenario() -> None:
        driver = BambuDriver(timeout=3)
        async with ftps_on(broker, tmp_path / "card") as ftps:
            try:
                with pytest.raises(ValidationFailed) as caught:
                    await driver.upload(printer(broker, ftps_port=ftps.port), name, source)
                assert caught.value.field == "filename"
            finally:
                await driver.close()
        assert ftps.commands == []
        assert not any((tmp_path / "card").rglob("*"))

    run(scenario)
