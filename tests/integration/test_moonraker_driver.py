"""The Moonraker driver against the real Moonraker 0.11.0 (PyPI, its own venv from
scripts/install-moonraker.sh) backed by the protocol-level Klippy in tests/peers.

A missing Moonraker install fails these tests; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from kittylab.adapters.devices.moonraker import MoonrakerDriver
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, ValidationFailed
from tests.peers.klippy_peer import KlippyPeer
from tests.peers.moonraker_process import MoonrakerProcess, free_port, install_moonraker

T = TypeVar("T")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MoonrakerProcess, KlippyPeer]]:
    executable = install_moonraker()
    # A short path: unix socket paths are limited to 108 bytes.
    workdir = tmp_path_factory.mktemp("mr")
    moonraker = MoonrakerProcess(executable, workdir, workdir / "klippy.sock")
    moonraker.prepare()
    klippy = KlippyPeer(workdir / "klippy.sock", moonraker.gcodes, bytes_per_second=4000.0)
    klippy.start()
    try:
        moonraker.start()
        yield moonraker, klippy
    finally:
        moonraker.stop()
        klippy.stop()


@pytest.fixture
def moonraker(lab: tuple[MoonrakerProcess, KlippyPeer]) -> MoonrakerProcess:
    return lab[0]


@pytest.fixture
def klippy(lab: tuple[MoonrakerProcess, KlippyPeer]) -> KlippyPeer:
    lab[1].reset()
    lab[1].settle()  # Moonraker has seen the idle printer (it refuses uploads of a loaded file)
    return lab[1]


@pytest.fixture
def printer(
    moonraker: MoonrakerProcess, klippy: KlippyPeer, monkeypatch: pytest.MonkeyPatch
) -> DeviceTarget:
    monkeypatch.setenv("MOONRAKER_API_KEY", moonraker.api_key())
    return DeviceTarget(
        id=uuid4(),
        external_id="voron",
        kind=DeviceKind.PRINTER,
        integration="moonraker",
        connection={"url": moonraker.url, "api_key": "${MOONRAKER_API_KEY}"},
    )


def run(scenario: Callable[[MoonrakerDriver], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        driver = MoonrakerDriver(**kwargs)
        try:
            return await scenario(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


async def wait_for_state(
    driver: MoonrakerDriver,
    device: DeviceTarget,
    check: Callable[[dict[str, Any]], bool],
    within: float = 10.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    state = await driver.state(device)
    while not check(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"state never matched; last: {state}")
        await asyncio.sleep(0.05)
        state = await driver.state(device)
    return state


def gcode(tmp_path: Path, moves: int) -> Path:
    path = tmp_path / "part.gcode"
    body = "".join(f"G1 X{i % 200} Y{i % 150} E0.05 ; move {i}\n" for i in range(moves))
    path.write_text(f"M140 S60\nM104 S215\nM190 S60\nM109 S215\n{body}M104 S0\nM140 S0\n")
    return path


def test_uploaded_file_prints_to_completion_with_rising_progress(
    printer: DeviceTarget, moonraker: MoonrakerProcess, tmp_path: Path
) -> None:
    source = gcode(tmp_path, 400)  # ~12 KB: about 3 s at the peer's 4 KB/s

    async def scenario(driver: MoonrakerDriver) -> list[dict[str, Any]]:
        await driver.upload(printer, "Part_2-v3.gcode", source)
        await driver.send(printer, "print_start", {"file": "Part_2-v3.gcode"})
        seen = [await wait_for_state(driver, printer, lambda s: s["state"] == "printing")]
        seen.append(
            await wait_for_state(driver, printer, lambda s: s["progress"] > seen[0]["progress"])
        )
        seen.append(await wait_for_state(driver, printer, lambda s: s["state"] == "completed"))
        return seen

    printing, later, completed = run(scenario)
    assert (moonraker.gcodes / "Part_2-v3.gcode").read_bytes() == source.read_bytes()
    assert printing["file"] == "Part_2-v3.gcode"
    assert printing["nozzle"]["target"] == 215.0 and printing["bed"]["target"] == 60.0
    assert 0.0 < later["progress"] < 1.0
    assert "seconds_left" in later
    assert completed["progress"] == 1.0
    assert completed["nozzle"]["target"] == 0.0  # the file's end turned the heaters off


def test_pause_resume_and_cancel_move_the_job_through_klippers_states(
    printer: DeviceTarget, tmp_path: Path
) -> None:
    source = gcode(tmp_path, 20000)  # long enough never to finish during the test

    async def scenario(driver: MoonrakerDriver) -> list[str]:
        await driver.upload(printer, "long.gcode", source)
        await driver.send(printer, "print_start", {"file": "long.gcode"})
        phases = [
            (await wait_for_state(driver, printer, lambda s: s["state"] == "printing"))["state"]
        ]
        await driver.send(printer, "print_pause", {})
        paused = await wait_for_state(driver, printer, lambda s: s["state"] == "paused")
        await asyncio.sleep(0.6)
        still = await driver.state(printer)
        assert still["progress"] == paused["progress"]  # a paused job does not advance
        phases.append(paused["state"])
        await driver.send(printer, "print_resume", {})
        phases.append(
            (await wait_for_state(driver, printer, lambda s: s["state"] == "printing"))["state"]
        )
        await driver.send(printer, "print_cancel", {})
        phases.append(
            (await wait_for_state(driver, printer, lambda s: s["state"] == "cancelled"))["state"]
        )
        return phases

    assert run(scenario) == ["printing", "paused", "printing", "cancelled"]


def test_a_job_waiting_for_its_temperatures_reports_heating(
    printer: DeviceTarget, klippy: KlippyPeer, tmp_path: Path
) -> None:
    klippy.heat_rate = 40.0  # °C per second: the M109 wait takes about five seconds
    source = gcode(tmp_path, 100)
    try:

        async def scenario(driver: MoonrakerDriver) -> dict[str, Any]:
            await driver.upload(printer, "warm.gcode", source)
            await driver.send(printer, "print_start", {"file": "warm.gcode"})
            heating = await wait_for_state(driver, printer, lambda s: s["state"] == "heating")
            await driver.send(printer, "print_cancel", {})
            return heating

        heating = run(scenario)
    finally:
        klippy.heat_rate = 400.0
    assert heating["nozzle"]["actual"] < heating["nozzle"]["target"] == 215.0


def test_resume_pause_and_cancel_of_an_idle_printer_are_refused_before_reaching_klipper(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> list[str]:
        reasons = []
        for intent in ("print_resume", "print_pause", "print_cancel"):
            with pytest.raises(DeviceRefused) as refused:
                await driver.send(printer, intent, {})
            reasons.append(str(refused.value))
        return reasons

    resume, pause, cancel = run(scenario)
    assert "print is not paused, resume aborted" in resume
    assert "idle, not printing" in pause
    assert "no job to cancel" in cancel
    # Klipper would have answered "ok" and, for PAUSE, marked an idle printer paused.
    assert klippy.count("pause_resume/pause") == klippy.count("pause_resume/resume") == 0
    assert klippy.count("pause_resume/cancel") == 0


def test_starting_a_second_job_while_printing_is_refused(
    printer: DeviceTarget, tmp_path: Path
) -> None:
    source = gcode(tmp_path, 20000)

    async def scenario(driver: MoonrakerDriver) -> str:
        await driver.upload(printer, "long.gcode", source)
        await driver.send(printer, "print_start", {"file": "long.gcode"})
        await wait_for_state(driver, printer, lambda s: s["state"] == "printing")
        with pytest.raises(DeviceRefused) as refused:
            await driver.send(printer, "print_start", {"file": "long.gcode"})
        await driver.send(printer, "print_cancel", {})
        return str(refused.value)

    assert "voron is printing; finish or cancel the job first" in run(scenario)


def test_uploading_over_the_file_being_printed_is_refused(
    printer: DeviceTarget, tmp_path: Path
) -> None:
    source = gcode(tmp_path, 20000)

    async def scenario(driver: MoonrakerDriver) -> str:
        await driver.upload(printer, "long.gcode", source)
        await driver.send(printer, "print_start", {"file": "long.gcode"})
        await wait_for_state(driver, printer, lambda s: s["state"] == "printing")
        with pytest.raises(DeviceRefused) as refused:
            await driver.upload(printer, "long.gcode", source)
        await driver.send(printer, "print_cancel", {})
        return str(refused.value)

    assert run(scenario) == "voron: File is loaded, upload not permitted"


def test_klipper_error_replies_are_refusals_with_klippers_message(printer: DeviceTarget) -> None:
    async def scenario(driver: MoonrakerDriver) -> list[str]:
        reasons = []
        with pytest.raises(DeviceRefused) as missing:
            await driver.send(printer, "print_start", {"file": "never-uploaded.gcode"})
        reasons.append(str(missing.value))
        with pytest.raises(DeviceRefused) as too_hot:
            await driver.send(printer, "printer_heat", {"nozzle": 320})
        reasons.append(str(too_hot.value))
        return reasons

    missing, too_hot = run(scenario)
    assert missing == "Unable to open file"
    assert too_hot == "Requested temperature (320.0) out of range (0.0:300.0)"


# Moonraker sends SDCARD_PRINT_FILE FILENAME="<name>" escaping only '"', and Klipper runs
# every line of a script: this name would start benchy.gcode and heat both heaters.
INJECTION = (
    'x\\" FILENAME=benchy.gcode\nM104 S250\nSET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=110'
)
HOSTILE_NAMES = {
    "klipper-injection": INJECTION,
    "newline": "benchy.gcode\nM104 S250",
    "carriage-return": "benchy.gcode\rM140 S110",
    "quote": 'benchy.gcode" FILENAME="other.gcode',
    "backslash": "..\\config\\printer.cfg",
    "traversal": "../config/printer.cfg",
    "folder": "jobs/benchy.gcode",
    "encoded-slash": "..%2Fconfig%2Fprinter.cfg",
    "nul": "benchy\u0000.gcode",
    "leading-dash": "-benchy.gcode",
}


def test_a_file_name_carrying_gcode_lines_never_reaches_klipper(
    printer: DeviceTarget, klippy: KlippyPeer, tmp_path: Path
) -> None:
    async def scenario(driver: MoonrakerDriver) -> dict[str, Any]:
        await driver.upload(printer, "benchy.gcode", gcode(tmp_path, 20000))
        with pytest.raises(DeviceRefused, match="print file name refused"):
            await driver.send(printer, "print_start", {"file": INJECTION})
        await asyncio.sleep(0.6)  # two of Klippy's status pushes
        return await driver.state(printer)

    state = run(scenario)
    assert klippy.scripts == []  # no SDCARD_PRINT_FILE, no M104, nothing
    assert (klippy.extruder.target, klippy.heater_bed.target) == (0.0, 0.0)
    assert state["state"] == "idle"


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_print_start_of_anything_but_a_plain_file_name_is_refused_without_a_script(
    printer: DeviceTarget, klippy: KlippyPeer, name: str
) -> None:
    async def scenario(driver: MoonrakerDriver) -> None:
        with pytest.raises(DeviceRefused, match="print file name refused"):
            await driver.send(printer, "print_start", {"file": name})

    run(scenario)
    assert klippy.scripts == []


@pytest.mark.parametrize(
    "name", ["../escape.gcode", "jobs/part.gcode", "a\nb.gcode", "-x.gcode", 'x".gcode']
)
def test_upload_under_anything_but_a_plain_file_name_is_invalid_and_stores_nothing(
    printer: DeviceTarget, moonraker: MoonrakerProcess, tmp_path: Path, name: str
) -> None:
    before = sorted(moonraker.data.rglob("*"))

    async def scenario(driver: MoonrakerDriver) -> None:
        with pytest.raises(ValidationFailed) as caught:
            await driver.upload(printer, name, gcode(tmp_path, 10))
        assert caught.value.field == "filename"

    run(scenario)
    assert sorted(moonraker.data.rglob("*")) == before


@pytest.mark.parametrize(
    "payload",
    [{"nozzle": float("nan")}, {"bed": float("inf")}, {"nozzle": "250\nM140 S110"}, {"bed": -5}],
    ids=["nan", "infinity", "text", "negative"],
)
def test_heat_with_a_target_that_is_not_a_temperature_sends_no_script(
    printer: DeviceTarget, klippy: KlippyPeer, payload: dict[str, Any]
) -> None:
    async def scenario(driver: MoonrakerDriver) -> None:
        with pytest.raises(DeviceRefused, match="must be a temperature"):
            await driver.send(printer, "printer_heat", payload)

    run(scenario)
    assert klippy.scripts == []


def test_heat_and_cooldown_send_m104_m140_and_the_targets_follow(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> tuple[dict[str, Any], dict[str, Any]]:
        await driver.send(printer, "printer_heat", {"nozzle": 215, "bed": 60})
        hot = await wait_for_state(
            driver, printer, lambda s: s["nozzle"]["actual"] > 210 and s["bed"]["actual"] > 55
        )
        await driver.send(printer, "printer_cooldown", {})
        cold = await wait_for_state(driver, printer, lambda s: s["nozzle"]["target"] == 0.0)
        return hot, cold

    hot, cold = run(scenario)
    assert klippy.scripts == ["M104 S215\nM140 S60", "M104 S0\nM140 S0"]
    assert hot["state"] == "idle"
    assert (hot["nozzle"]["target"], hot["bed"]["target"]) == (215.0, 60.0)
    assert (cold["nozzle"]["target"], cold["bed"]["target"]) == (0.0, 0.0)


def test_pushed_status_reaches_the_cache_without_polling_the_printer(
    printer: DeviceTarget, klippy: KlippyPeer, tmp_path: Path
) -> None:
    source = gcode(tmp_path, 20000)

    async def scenario(driver: MoonrakerDriver) -> tuple[dict[str, Any], dict[str, Any], int]:
        await driver.upload(printer, "long.gcode", source)
        await driver.send(printer, "print_start", {"file": "long.gcode"})
        await wait_for_state(driver, printer, lambda s: s["state"] == "printing")
        queries = klippy.count("objects/query") + klippy.count("objects/subscribe")
        await asyncio.to_thread(klippy.set_filament, False)
        runout = await wait_for_state(driver, printer, lambda s: s["filament_present"] is False)
        await asyncio.to_thread(klippy.fail_print, "Move out of range: 250.000 0.000 0.300")
        failed = await wait_for_state(driver, printer, lambda s: s["state"] == "failed")
        after = klippy.count("objects/query") + klippy.count("objects/subscribe")
        return runout, failed, after - queries

    runout, failed, new_queries = run(scenario)
    assert runout["state"] == "printing" and runout["filament_present"] is False
    assert failed["failure"] == "Move out of range: 250.000 0.000 0.300"
    assert new_queries == 0


def test_a_klipper_shutdown_is_the_printers_error_state(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> tuple[dict[str, Any], dict[str, Any]]:
        await wait_for_state(driver, printer, lambda s: s["state"] == "idle")
        await asyncio.to_thread(klippy.shutdown, "MCU 'mcu' shutdown: Timer too close")
        down = await wait_for_state(driver, printer, lambda s: s["state"] == "error")
        await asyncio.to_thread(klippy.reset)
        up = await wait_for_state(driver, printer, lambda s: s["state"] == "idle")
        return down, up

    down, up = run(scenario)
    assert down["failure"] == "MCU 'mcu' shutdown: Timer too close"
    assert up["state"] == "idle"


def test_after_klipper_restarts_the_driver_subscribes_again_and_sees_pushes(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> dict[str, Any]:
        await wait_for_state(driver, printer, lambda s: s.get("filament_present") is True)
        subscriptions = klippy.count("objects/subscribe")
        await asyncio.to_thread(klippy.restart)
        # Moonraker reconnects, announces notify_klippy_ready, and the driver subscribes
        # anew; only then does a pushed change reach its cache.
        await wait_for_state(driver, printer, lambda s: s["state"] == "idle")
        deadline = time.monotonic() + 10
        while klippy.count("objects/subscribe") <= subscriptions + 1:
            assert time.monotonic() < deadline, "the driver never subscribed again"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(klippy.set_filament, False)
        return await wait_for_state(driver, printer, lambda s: s.get("filament_present") is False)

    assert run(scenario)["state"] == "idle"


def test_after_moonraker_restarts_the_driver_reconnects(
    printer: DeviceTarget, moonraker: MoonrakerProcess
) -> None:
    async def scenario(driver: MoonrakerDriver) -> dict[str, Any]:
        await driver.state(printer)
        await asyncio.to_thread(moonraker.stop)

        async def poll() -> None:
            for _ in range(100):  # until the driver has seen the socket close
                await driver.state(printer)
                await asyncio.sleep(0.02)

        with pytest.raises(DeviceUnavailable):
            await poll()
        await asyncio.to_thread(moonraker.start)
        return await driver.state(printer)

    assert run(scenario)["state"] == "idle"


def test_debug_logs_never_show_the_api_key(
    printer: DeviceTarget, moonraker: MoonrakerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.state(printer)
        await driver.send(printer, "printer_status", {})

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert moonraker.api_key() not in caplog.text


def test_concurrent_first_calls_share_one_connection(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(driver.state(printer) for _ in range(5))))

    subscriptions = klippy.count("objects/subscribe")
    states = run(scenario)
    assert all(s["state"] == "idle" for s in states)
    assert klippy.count("objects/subscribe") == subscriptions + 1


def test_status_intent_refreshes_the_cache_with_a_query(
    printer: DeviceTarget, klippy: KlippyPeer
) -> None:
    async def scenario(driver: MoonrakerDriver) -> int:
        await driver.state(printer)
        before = klippy.count("objects/query")
        await driver.send(printer, "printer_status", {})
        return klippy.count("objects/query") - before

    assert run(scenario) == 1


def test_a_wrong_api_key_is_device_unavailable(
    printer: DeviceTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOONRAKER_API_KEY", "0" * 32)

    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.state(printer)

    with pytest.raises(DeviceUnavailable, match="rejected the API key") as caught:
        run(scenario)
    assert "0" * 32 not in str(caught.value)


def test_a_wrong_api_key_fails_the_upload_as_unavailable(
    printer: DeviceTarget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOONRAKER_API_KEY", "0" * 32)
    source = gcode(tmp_path, 10)

    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.upload(printer, "part.gcode", source)

    with pytest.raises(DeviceUnavailable, match="rejected the API key"):
        run(scenario)


def test_an_unset_key_variable_is_unavailable_naming_the_variable(
    printer: DeviceTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOONRAKER_API_KEY")

    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.state(printer)

    with pytest.raises(DeviceUnavailable, match="MOONRAKER_API_KEY is not set"):
        run(scenario)


def test_a_closed_port_is_unavailable_at_once() -> None:
    device = DeviceTarget(
        id=uuid4(),
        external_id="gone",
        kind=DeviceKind.PRINTER,
        integration="moonraker",
        connection={"url": f"http://127.0.0.1:{free_port()}"},
    )

    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.send(device, "print_pause", {})

    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="unreachable"):
        run(scenario)
    assert time.monotonic() - started < 2.0


def test_a_host_that_never_answers_is_unavailable_after_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    device = DeviceTarget(
        id=uuid4(),
        external_id="mute",
        kind=DeviceKind.PRINTER,
        integration="moonraker",
        connection={"url": f"http://127.0.0.1:{listener.getsockname()[1]}"},
    )

    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.state(device)

    started = time.monotonic()
    try:
        with pytest.raises(DeviceUnavailable):
            run(scenario, timeout=0.5)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert time.monotonic() - started < 3.0


def test_intents_of_other_kinds_are_refused(printer: DeviceTarget) -> None:
    async def scenario(driver: MoonrakerDriver) -> None:
        await driver.send(printer, "door_unlock", {})

    with pytest.raises(DeviceRefused, match="cannot door_unlock"):
        run(scenario)
