"""The OctoPrint driver against a real OctoPrint 1.11.8 and its virtual printer.

One OctoPrint runs for the whole session (``tests/peers/octoprint.py``); each test starts
from an operational, idle, cold printer. Jobs are G-code made of ``G4`` dwells, which the
virtual printer waits out in real time, so a job's length is predictable.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.tables import Device as DeviceRow
from kittylab.adapters.db.tables import DeviceCommand, FabricationJob, Zone
from kittylab.adapters.devices.octoprint import OctoPrintDriver
from kittylab.config import CommandSettings
from kittylab.devices import telemetry
from kittylab.devices.poller import DevicePoller
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.device_state import PrinterPhase
from kittylab.domain.enums import CommandStatus, DeviceKind, FabricationStatus, HazardLevel
from kittylab.domain.errors import DeviceRefused, ValidationFailed
from tests.integration.print_lab import post_job, upload, work_queue
from tests.peers import octoprint as peer

KEY_ENV = "KL_TEST_OCTOPRINT_KEY"
T = TypeVar("T")
# The first test also installs OctoPrint when the cache has none (a minute or two).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peer.OctoPrintPeer]:
    server = peer.start(tmp_path_factory.mktemp("octoprint"))
    try:
        yield server
    finally:
        peer.stop(server)


@pytest.fixture
def printer(octoprint: peer.OctoPrintPeer, monkeypatch: pytest.MonkeyPatch) -> DeviceTarget:
    """The virtual printer: connected, no job running, heaters off; its key comes from
    the environment, as a lab manifest's ``${…}`` reference would."""
    _reset(octoprint)
    monkeypatch.setenv(KEY_ENV, octoprint.api_key)
    return _device(octoprint.url, "${" + KEY_ENV + "}")


@pytest.fixture
def gcode(tmp_path: Path) -> Callable[[int, int], Path]:
    """A G-code file of ``dwells`` × ``G4 P<ms>``: about dwells × ms of printing."""

    def make(dwells: int, ms: int) -> Path:
        path = tmp_path / f"dwell-{dwells}x{ms}.gcode"
        lines = ["G28", "G90"]
        for i in range(dwells):
            lines += [f"G4 P{ms}", f"G1 X{i + 1} Y{i + 1} F3000"]
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


def test_heat_connects_a_disconnected_printer_then_sets_both_targets(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget
) -> None:
    _api(octoprint, "POST", "/api/connection", {"command": "disconnect"})
    _wait_api_state(octoprint, {"Offline", "Closed"})

    async def scenario(driver: OctoPrintDriver) -> None:
        # Reachable, not unavailable: the device stays online and a heat is not refused.
        assert await driver.state(printer) == {"state": "disconnected", "file": None}
        await driver.send(printer, "printer_heat", {"nozzle": 205, "bed": 55})
        state = await _wait_state(driver, printer, lambda s: _targets(s) == (205, 55))
        assert state["state"] == "idle"
        await driver.send(printer, "printer_cooldown", {})
        await _wait_state(driver, printer, lambda s: _targets(s) == (0, 0))

    _run(scenario)


def test_concurrent_intents_on_a_disconnected_printer_connect_it_once(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget
) -> None:
    _api(octoprint, "POST", "/api/connection", {"command": "disconnect"})
    _wait_api_state(octoprint, {"Offline", "Closed"})
    transport = _RecordingTransport()

    async def scenario(driver: OctoPrintDriver) -> None:
        # OctoPrint itself would open the port once per concurrent connect request.
        await asyncio.gather(
            *(driver.send(printer, "printer_heat", {"nozzle": 150 + i}) for i in range(5)),
            driver.send(printer, "printer_cooldown", {}),
        )

    _run(scenario, transport=transport)
    assert transport.requests.count(("POST", "/api/connection")) == 1
    assert _api(octoprint, "GET", "/api/job").json()["state"] == "Operational"


def test_uploaded_file_prints_with_rising_progress(
    printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "rising.gcode", gcode(40, 250))
        await driver.send(printer, "print_start", {"file": "rising.gcode"})
        first = await _wait_state(driver, printer, lambda s: s.get("progress", 0) > 0)
        assert first["state"] == "printing"
        assert first["file"] == "rising.gcode"
        later = await _wait_state(
            driver, printer, lambda s: s.get("progress", 0) > first["progress"] + 0.05
        )
        assert later["state"] == "printing"
        assert 0 < later["progress"] < 1
        with_heaters = await _wait_state(driver, printer, lambda s: "nozzle" in s and "bed" in s)
        assert with_heaters["state"] == "printing"

    _run(scenario)


def test_job_waiting_on_its_nozzle_temperature_reports_heating_then_printing(
    printer: DeviceTarget, tmp_path: Path
) -> None:
    job = tmp_path / "warm.gcode"  # the virtual hotend heats about 10 °C/s
    job.write_text("M109 S45\n" + "G4 P250\nG1 X1 Y1\n" * 40)

    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "warm.gcode", job)
        await driver.send(printer, "print_start", {"file": "warm.gcode"})
        # OctoPrint learns the new target from the next temperature report: until then
        # the job shows as printing.
        heating = await _wait_state(driver, printer, lambda s: s["state"] == "heating")
        assert heating["nozzle"]["target"] == 45
        assert heating["nozzle"]["actual"] < 40
        printing = await _wait_state(driver, printer, lambda s: s["state"] != "heating")
        assert printing["state"] == "printing"
        assert printing["nozzle"]["actual"] >= 40

    _run(scenario)


def test_pause_reports_paused_and_resume_reports_printing_again(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "pause.gcode", gcode(40, 250))
        await driver.send(printer, "print_start", {"file": "pause.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")
        await driver.send(printer, "print_pause", {})
        paused = await driver.state(printer)
        assert paused["state"] == "paused"  # "Pausing" already counts
        await asyncio.to_thread(_wait_api_state, octoprint, {"Paused"})
        held = (await driver.state(printer))["progress"]
        await asyncio.sleep(0.6)
        still = await driver.state(printer)
        assert (still["state"], still["progress"]) == ("paused", held)
        await driver.send(printer, "print_resume", {})
        resumed = await _wait_state(driver, printer, lambda s: s["state"] != "paused")
        assert resumed["state"] == "printing"
        await _wait_state(driver, printer, lambda s: s["progress"] > held)

    _run(scenario)


def test_resume_sent_while_octoprint_is_still_pausing_resumes_the_job(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        # A pause lands in the first, 3 s dwell and stays "Pausing" until it ends.
        job = gcode(40, 250)
        job.write_text("G4 P3000\n" + job.read_text())
        await driver.upload(printer, "slow.gcode", job)
        await driver.send(printer, "print_start", {"file": "slow.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")
        await driver.send(printer, "print_pause", {})
        caught_pausing = _api(octoprint, "GET", "/api/job").json()["state"] == "Pausing"
        await driver.send(printer, "print_resume", {})
        assert caught_pausing, "the pause finished before the resume: the test proves nothing"
        # Had the resume gone out while pausing, OctoPrint would have dropped it: paused.
        await _wait_state(driver, printer, lambda s: s["state"] == "printing", within=5)

    _run(scenario)


def test_cancel_reports_cancelled_and_frees_the_printer_for_the_next_job(
    printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "cancel.gcode", gcode(40, 250))
        await driver.send(printer, "print_start", {"file": "cancel.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")
        await driver.send(printer, "print_cancel", {})
        cancelled = await _wait_state(driver, printer, lambda s: s["state"] != "printing")
        assert cancelled["state"] == "cancelled"
        settled = await _wait_state(driver, printer, lambda s: s["state"] == "cancelled")
        await asyncio.sleep(0.5)  # OctoPrint finishes cancelling: still cancelled after
        assert (await driver.state(printer))["state"] == settled["state"] == "cancelled"
        await driver.send(printer, "print_start", {"file": "cancel.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")

    _run(scenario)


def test_finished_job_reports_completed_at_full_progress(
    printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "short.gcode", gcode(4, 200))
        await driver.send(printer, "print_start", {"file": "short.gcode"})
        done = await _wait_state(driver, printer, lambda s: s["state"] == "completed", within=15)
        assert done["progress"] == 1.0
        assert done["file"] == "short.gcode"

    _run(scenario)


def test_pause_when_idle_is_refused_with_octoprints_reason(printer: DeviceTarget) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceRefused, match="neither printing nor paused"):
            await driver.send(printer, "print_pause", {})
        with pytest.raises(DeviceRefused, match=printer.external_id):
            await driver.send(printer, "print_resume", {})

    _run(scenario)


def test_start_of_a_file_not_on_octoprint_is_refused(printer: DeviceTarget) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        before = await driver.state(printer)
        with pytest.raises(DeviceRefused, match=r"no file 'missing\.gcode'"):
            await driver.send(printer, "print_start", {"file": "missing.gcode"})
        after = await driver.state(printer)
        assert not PrinterPhase(after["state"]).busy
        assert (after["state"], after["file"]) == (before["state"], before["file"])

    _run(scenario)


def test_start_and_cooldown_while_printing_are_refused(
    printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "busy.gcode", gcode(40, 250))
        await driver.send(printer, "print_start", {"file": "busy.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")
        with pytest.raises(DeviceRefused, match="already printing"):
            await driver.send(printer, "print_start", {"file": "busy.gcode"})
        with pytest.raises(DeviceRefused, match="pause or cancel first"):
            await driver.send(printer, "printer_cooldown", {})
        with pytest.raises(DeviceRefused, match="being printed"):
            await driver.upload(printer, "busy.gcode", gcode(2, 10))
        assert (await driver.state(printer))["state"] == "printing"

    _run(scenario)


def test_upload_replaces_a_file_of_the_same_name(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    small, large = gcode(1, 10), gcode(30, 10)

    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "replaced.gcode", small)
        await driver.upload(printer, "replaced.gcode", large)

    _run(scenario)
    info = _api(octoprint, "GET", "/api/files/local/replaced.gcode").json()
    assert info["size"] == large.stat().st_size
    assert _api(octoprint, "GET", "/api/job").json()["state"] == "Operational"  # not started


def test_emergency_stop_reports_error_with_reason_and_refuses_a_start(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget
) -> None:
    _api(octoprint, "POST", "/api/printer/command", {"command": "M112"})
    _wait_api_state(octoprint, {"Error", "Offline after error"})

    async def scenario(driver: OctoPrintDriver) -> None:
        state = await driver.state(printer)
        assert state["state"] == "error"
        assert "M112" in state["failure"]
        with pytest.raises(DeviceRefused, match=r"in error .*M112"):
            await driver.send(printer, "print_start", {"file": "anything.gcode"})

    _run(scenario)


def test_octoprint_going_away_mid_job_is_unavailable_until_it_is_back_disconnected(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    async def printing(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, "lost.gcode", gcode(40, 250))
        await driver.send(printer, "print_start", {"file": "lost.gcode"})
        await _wait_state(driver, printer, lambda s: s["state"] == "printing")

    async def gone(driver: OctoPrintDriver) -> None:
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable, match="cannot be reached"):
            await driver.state(printer)
        with pytest.raises(DeviceUnavailable, match="cannot be reached"):
            await driver.send(printer, "print_cancel", {})
        assert time.monotonic() - started < 2

    async def back(driver: OctoPrintDriver) -> None:
        # The job died with OctoPrint, and it does not reconnect the printer on its own.
        assert (await driver.state(printer))["state"] == "disconnected"
        with pytest.raises(DeviceRefused, match="not operational"):
            await driver.send(printer, "print_cancel", {})

    _run(printing)
    peer.stop(octoprint)
    try:
        _run(gone)
    finally:
        peer.restart(octoprint)
    _run(back)


def test_wrong_api_key_makes_the_printer_unavailable(octoprint: peer.OctoPrintPeer) -> None:
    device = _device(octoprint.url, "not-the-key")

    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceUnavailable, match="refused the API key") as raised:
            await driver.state(device)
        assert "not-the-key" not in str(raised.value)
        with pytest.raises(DeviceUnavailable, match="refused the API key"):
            await driver.send(device, "print_pause", {})

    _run(scenario)


def test_url_that_is_not_octoprints_api_is_unavailable(
    octoprint: peer.OctoPrintPeer,
) -> None:
    proxied = octoprint.url.replace("http://", "http://proxyuser:proxy-secret@")
    device = _device(proxied + "/not-octoprint", octoprint.api_key)

    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceUnavailable, match="no OctoPrint API at /not-octoprint") as e:
            await driver.state(device)
        assert "proxy-secret" not in str(e.value)

    _run(scenario)


def test_unreachable_host_is_unavailable_at_once() -> None:
    device = _device(f"http://127.0.0.1:{_closed_port()}", "key")

    async def scenario(driver: OctoPrintDriver) -> None:
        started = time.monotonic()
        with pytest.raises(DeviceUnavailable, match="cannot be reached"):
            await driver.send(device, "print_start", {"file": "x.gcode"})
        assert time.monotonic() - started < 2

    _run(scenario)


def test_silent_host_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        device = _device(f"http://127.0.0.1:{listener.getsockname()[1]}", "key")

        async def scenario(driver: OctoPrintDriver) -> None:
            started = time.monotonic()
            with pytest.raises(DeviceUnavailable, match=r"did not answer within 0.5 s"):
                await driver.state(device)
            assert 0.4 < time.monotonic() - started < 3

        _run(scenario, timeout=0.5)


def test_intent_that_octoprint_cannot_carry_out_is_refused(printer: DeviceTarget) -> None:
    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceRefused, match="cannot door_unlock"):
            await driver.send(printer, "door_unlock", {})

    _run(scenario)


# -- names that stay names (issue 11) ------------------------------------------------------

SHUTDOWN = "../../system/commands/core/shutdown"
HOSTILE_NAMES = {
    "encoded-slash": "..%2F..%2Fsystem%2Fcommands%2Fcore%2Fshutdown",
    "encoded-dots": "%2e%2e/%2e%2e/system/commands/core/shutdown",
    "backslash": "..\\..\\system\\commands\\core\\shutdown",
    "folder": "jobs/part.gcode",
    "absolute": "/api/system/commands/core/shutdown",
    "query": "x.gcode?apikey=other",
    "quote": 'x".gcode',
    "newline": "x.gcode\nM104 S250",
    "nul": "x\u0000.gcode",
    "leading-dash": "-x.gcode",
}


def test_print_start_of_a_traversal_never_reaches_octoprints_shutdown_command(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget
) -> None:
    transport = _RecordingTransport()

    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceRefused, match="print file name refused"):
            await driver.send(printer, "print_start", {"file": SHUTDOWN})

    _run(scenario, transport=transport)
    assert transport.requests == []  # refused before even a connection check
    # OctoPrint runs the command it is sent in the background: give it time to show.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert not octoprint.shutdown_marker.exists(), "the system shutdown command ran"
        time.sleep(0.1)


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_print_start_of_anything_but_a_plain_file_name_is_refused_before_any_request(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, name: str
) -> None:
    transport = _RecordingTransport()

    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(DeviceRefused, match="print file name refused"):
            await driver.send(printer, "print_start", {"file": name})

    _run(scenario, transport=transport)
    assert transport.requests == []
    assert not octoprint.shutdown_marker.exists()


@pytest.mark.parametrize(
    "name",
    # "part:1.gcode" is one OctoPrint would store as "part1.gcode": refused before sending.
    [
        "../escape.gcode",
        "a\nb.gcode",
        "x\u0000.gcode",
        "-x.gcode",
        "%2e%2e%2fx.gcode",
        "part:1.gcode",
    ],
)
def test_upload_under_anything_but_a_plain_file_name_is_invalid_and_stores_nothing(
    octoprint: peer.OctoPrintPeer,
    printer: DeviceTarget,
    gcode: Callable[[int, int], Path],
    name: str,
) -> None:
    before = _stored_files(octoprint)

    async def scenario(driver: OctoPrintDriver) -> None:
        with pytest.raises(ValidationFailed) as caught:
            await driver.upload(printer, name, gcode(2, 10))
        assert caught.value.field == "filename"

    _run(scenario)
    assert _stored_files(octoprint) == before


def test_a_plain_name_with_capitals_digits_dashes_and_underscores_uploads_and_prints(
    octoprint: peer.OctoPrintPeer, printer: DeviceTarget, gcode: Callable[[int, int], Path]
) -> None:
    name = "Part_2-v3.final.gcode"

    async def scenario(driver: OctoPrintDriver) -> None:
        await driver.upload(printer, name, gcode(40, 250))
        await driver.send(printer, "print_start", {"file": name})
        printing = await _wait_state(driver, printer, lambda s: s["state"] == "printing")
        assert printing["file"] == name
        await driver.send(printer, "print_cancel", {})

    _run(scenario)
    assert name in _stored_files(octoprint)


def _stored_files(server: peer.OctoPrintPeer) -> set[str]:
    listing = _api(server, "GET", "/api/files/local?recursive=true").json()
    return {str(f.get("path")) for f in listing.get("files", [])}


# -- helpers ------------------------------------------------------------------------------


def _device(url: str, api_key: str) -> DeviceTarget:
    return DeviceTarget(
        id=uuid4(),
        external_id="mk3-octo",
        kind=DeviceKind.PRINTER,
        integration="octoprint",
        connection={"url": url, "api_key": api_key, "port": "VIRTUAL"},
    )


class _RecordingTransport(httpx.AsyncHTTPTransport):
    """The network transport, noting each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return await super().handle_async_request(request)


def _run(
    scenario: Callable[[OctoPrintDriver], Awaitable[T]],
    timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> T:
    async def main() -> T:
        driver = OctoPrintDriver(
            timeout=timeout, state_wait=20, poll_interval=0.1, transport=transport
        )
        try:
            return await scenario(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


async def _wait_state(
    driver: OctoPrintDriver,
    device: DeviceTarget,
    predicate: Callable[[dict[str, Any]], bool],
    within: float = 10.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        state = await driver.state(device)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"state never matched within {within} s; last: {state}")
        await asyncio.sleep(0.1)


def _targets(state: dict[str, Any]) -> tuple[float, float] | None:
    if "nozzle" not in state or "bed" not in state:
        return None
    return state["nozzle"]["target"], state["bed"]["target"]


def _api(
    server: peer.OctoPrintPeer, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """OctoPrint's API directly: arranging and checking, not under test."""
    response = httpx.request(
        method, server.url + path, json=body, headers={"X-Api-Key": server.api_key}, timeout=10
    )
    response.raise_for_status()
    return response


def _wait_api_state(server: peer.OctoPrintPeer, wanted: set[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (state := _api(server, "GET", "/api/job").json()["state"]) not in wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"OctoPrint stayed {state!r}, not {wanted}\n{server.log_tail()}")
        time.sleep(0.1)


def _reset(server: peer.OctoPrintPeer) -> None:
    """Back to connected, idle and cold, whatever the last test left."""
    state = _api(server, "GET", "/api/job").json()["state"]
    if state in ("Offline", "Closed", "Error", "Offline after error"):
        _api(server, "POST", "/api/connection", {"command": "connect", "port": "VIRTUAL"})
    elif state not in ("Operational",):
        _wait_api_state(server, {"Printing", "Paused", "Operational", "Printing from SD"})
        if _api(server, "GET", "/api/job").json()["state"] != "Operational":
            _api(server, "POST", "/api/job", {"command": "cancel"})
    _wait_api_state(server, {"Operational"})
    _api(server, "POST", "/api/printer/tool", {"command": "target", "targets": {"tool0": 0}})
    _api(server, "POST", "/api/printer/bed", {"command": "target", "target": 0})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the whole path: a print job from upload to finished part on OctoPrint -------------


def test_a_print_job_runs_from_upload_to_completed_on_octoprint(
    printer: DeviceTarget,
    gcode: Callable[[int, int], Path],
    container: Any,
    client: Any,
    operator: Any,
    database: Any,
    database_url: str,
) -> None:
    """Upload through the API, the job queue's worker puts the G-code on OctoPrint and
    starts it through the command path (acked on OctoPrint's own state), the tracker
    follows it to completed. The device comes online through the poller."""
    device_id = _printer_row(database, printer)
    job_file = gcode(30, 200)  # about 6 s of printing
    key = upload(client, operator, job_file.name, job_file.read_bytes())
    driver = OctoPrintDriver()
    wired = replace(container, drivers={"octoprint": driver})

    async def scenario() -> str:
        try:
            poller = DevicePoller(database, wired.drivers, container.clock)
            assert await poller.round() == 1  # OctoPrint answers: the printer is online
            created = await asyncio.to_thread(post_job, client, operator, device_id, key)
            await work_queue(wired, database_url)  # prepare, upload, print_start, confirm
            tracker = bootstrap.print_tracker(wired)
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                await tracker.round()
                with database.unit_of_work() as s:
                    status = s.get(FabricationJob, created["id"]).status
                if status is FabricationStatus.COMPLETED:
                    break
                await asyncio.sleep(0.5)
            assert status is FabricationStatus.COMPLETED
            return str(created["id"])
        finally:
            await driver.close()

    asyncio.run(scenario())
    with database.unit_of_work() as s:
        start = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start")).one()
        assert start.status is CommandStatus.ACKED
        assert start.payload == {"file": job_file.name}


def test_a_failure_reported_as_soon_as_the_job_prints_pauses_octoprint(
    octoprint: peer.OctoPrintPeer,
    printer: DeviceTarget,
    gcode: Callable[[int, int], Path],
    container: Any,
    client: Any,
    operator: Any,
    database: Any,
    database_url: str,
) -> None:
    """The tracker's read that moves the job to printing is also the printer's last known
    state, so a failure reported right then — before the poller's next round, which
    last saw the printer idle — is not refused as "idle, not printing": the pause goes
    out and OctoPrint pauses."""
    device_id = _printer_row(database, printer)
    job_file = gcode(100, 200)  # about 20 s of printing; cancelled long before
    key = upload(client, operator, job_file.name, job_file.read_bytes())
    driver = OctoPrintDriver()
    wired = replace(container, drivers={"octoprint": driver})

    async def scenario() -> dict[str, Any]:
        try:
            poller = DevicePoller(database, wired.drivers, container.clock)
            assert await poller.round() == 1  # online, and last seen idle
            created = await asyncio.to_thread(post_job, client, operator, device_id, key)
            await work_queue(wired, database_url)  # prepare, upload, print_start, confirm
            tracker = bootstrap.print_tracker(wired)
            deadline = time.monotonic() + 20
            while _job_status(database, created["id"]) is not FabricationStatus.PRINTING:
                assert time.monotonic() < deadline, "the job never reached printing"
                await tracker.round()
                await asyncio.sleep(0.1)
            shot = await asyncio.to_thread(
                client.put,
                f"/api/fabrication/jobs/{created['id']}/snapshots/cam.jpg",
                content=b"\xff\xd8\xff\xe0" + b"\x00" * 32,
                headers=operator.headers,
            )
            assert shot.status_code == 201, shot.text
            failure = await asyncio.to_thread(
                client.post,
                f"/api/fabrication/jobs/{created['id']}/monitor-events",
                json={
                    "eventType": "spaghetti_detected",
                    "confidence": 0.93,
                    "snapshotKey": shot.json()["snapshotKey"],
                },
                headers=operator.headers,
            )
            assert failure.status_code == 201, failure.text
            await work_queue(wired, database_url)  # dispatch the pause
            report: dict[str, Any] = failure.json()
            return report
        finally:
            await driver.close()

    report = asyncio.run(scenario())
    assert report["note"] is None
    assert report["pauseCommandId"] is not None
    assert _api(octoprint, "GET", "/api/job").json()["state"] in {"Pausing", "Paused"}
    with database.unit_of_work() as s:
        pause = s.get(DeviceCommand, UUID(report["pauseCommandId"]))
        assert pause is not None
        assert pause.status is CommandStatus.ACKED


def _printer_row(database: Any, printer: DeviceTarget) -> UUID:
    """The virtual printer as a lab device, driven through the ``octoprint`` integration."""
    with database.unit_of_work() as s:
        zone = Zone(name="octo-bench", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        device = DeviceRow(
            external_id="mk3-octo",
            integration="octoprint",
            display_name="MK3 on OctoPrint",
            kind=DeviceKind.PRINTER,
            zone_id=zone.id,
            connection=dict(printer.connection),
            capabilities={
                intent: {"type": "object"}
                for intent in ("print_start", "print_pause", "print_resume", "print_cancel")
            },
        )
        s.add(device)
        s.flush()
        device_id: UUID = device.id
        return device_id


def _job_status(database: Any, job_id: str) -> FabricationStatus:
    with database.unit_of_work() as s:
        row = s.get(FabricationJob, UUID(job_id))
        assert row is not None
        return row.status


def test_octoprint_going_away_mid_job_fails_the_job_after_the_setting_and_the_next_job_runs(
    octoprint: peer.OctoPrintPeer,
    printer: DeviceTarget,
    gcode: Callable[[int, int], Path],
    container: Any,
    client: Any,
    operator: Any,
    database: Any,
    database_url: str,
) -> None:
    """OctoPrint stops mid-job: the tracker cannot read the printer, and after
    ``printer_lost_after_seconds`` the job fails with the reason (its queue is not held
    forever). OctoPrint comes back not connected to the printer: that is reachable, so the
    device stays online, and the next job's start connects it and prints."""
    device_id = _printer_row(database, printer)
    lost_file, next_file = gcode(150, 200), gcode(20, 200)  # ~30 s (lost), ~4 s
    lost_key = upload(client, operator, "lost.gcode", lost_file.read_bytes())
    next_key = upload(client, operator, "next.gcode", next_file.read_bytes())
    driver = OctoPrintDriver(timeout=3)
    fabrication = container.settings.fabrication.model_copy(
        update={"printer_lost_after_seconds": 1.0}
    )
    settings = container.settings.model_copy(update={"fabrication": fabrication})
    wired = replace(container, drivers={"octoprint": driver}, settings=settings)

    async def until(job_id: str, wanted: set[FabricationStatus], within: float) -> None:
        tracker = bootstrap.print_tracker(wired)
        deadline = time.monotonic() + within
        while _job_status(database, job_id) not in wanted:
            assert time.monotonic() < deadline, f"job {job_id} never reached {wanted}"
            await tracker.round()
            await asyncio.sleep(0.2)

    async def scenario() -> tuple[str, str]:
        try:
            poller = DevicePoller(database, wired.drivers, container.clock)
            assert await poller.round() == 1
            lost = await asyncio.to_thread(post_job, client, operator, device_id, lost_key)
            await _work_queue(wired, database_url)
            await until(lost["id"], {FabricationStatus.PRINTING}, 20)

            await asyncio.to_thread(peer.stop, octoprint)
            try:
                await until(lost["id"], {FabricationStatus.FAILED}, 20)
                assert await poller.round() == 0  # nothing answers
            finally:
                await asyncio.to_thread(peer.restart, octoprint)

            # Back, and not connected to the printer: reachable, so it reports.
            assert await poller.round() == 1
            assert _state_of(database, device_id)["state"] == "disconnected"
            cleared = await asyncio.to_thread(
                client.post,
                f"/api/fabrication/printers/{device_id}/bed-clear",
                headers=operator.headers,
            )
            assert cleared.status_code == 200, cleared.text
            following = await asyncio.to_thread(post_job, client, operator, device_id, next_key)
            await _work_queue(wired, database_url)  # the start connects the printer
            await until(
                following["id"], {FabricationStatus.PRINTING, FabricationStatus.COMPLETED}, 20
            )
            return str(lost["id"]), str(following["id"])
        finally:
            await driver.close()

    lost_id, _ = asyncio.run(scenario())
    with database.unit_of_work() as s:
        failed = s.get(FabricationJob, UUID(lost_id))
        assert failed is not None
        reason = failed.details["reason"]
        starts = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start"))
        assert [c.status for c in starts] == [CommandStatus.ACKED, CommandStatus.ACKED]
    assert "lost contact with the printer" in reason
    assert "cannot be reached" in reason


async def _work_queue(container: Any, database_url: str) -> None:
    """The job queue's worker until it is empty, with time for OctoPrint to connect."""
    commands = CommandSettings(ack_timeout_seconds=20, poll_interval_seconds=0.1)
    await work_queue(container, database_url, commands)


def _state_of(database: Any, device_id: UUID) -> dict[str, Any]:
    with database.unit_of_work() as s:
        latest = telemetry.latest_state(s, device_id)
        assert latest is not None
        return dict(latest.payload)


def test_a_pause_octoprint_answers_409_fails_with_its_reason_and_leaves_the_job_to_the_printer(
    octoprint: peer.OctoPrintPeer,
    printer: DeviceTarget,
    gcode: Callable[[int, int], Path],
    container: Any,
    client: Any,
    operator: Any,
    database: Any,
    database_url: str,
) -> None:
    """The records say printing, but the job was cancelled on OctoPrint itself a moment
    ago: the pause passes KittyLab's checks, OctoPrint refuses it with a 409, and the
    command fails with OctoPrint's reason. The job is not touched by the refusal; the
    tracker then aborts it as the printer reports."""
    device_id = _printer_row(database, printer)
    job_file = gcode(100, 200)  # about 20 s of printing; cancelled long before
    key = upload(client, operator, job_file.name, job_file.read_bytes())
    driver = OctoPrintDriver()
    wired = replace(container, drivers={"octoprint": driver})

    async def scenario() -> tuple[str, dict[str, Any]]:
        try:
            poller = DevicePoller(database, wired.drivers, container.clock)
            assert await poller.round() == 1
            created = await asyncio.to_thread(post_job, client, operator, device_id, key)
            await work_queue(wired, database_url)
            tracker = bootstrap.print_tracker(wired)
            deadline = time.monotonic() + 20
            while _job_status(database, created["id"]) is not FabricationStatus.PRINTING:
                assert time.monotonic() < deadline, "the job never reached printing"
                await tracker.round()
                await asyncio.sleep(0.1)

            await asyncio.to_thread(_api, octoprint, "POST", "/api/job", {"command": "cancel"})
            await asyncio.to_thread(_wait_api_state, octoprint, {"Operational"})
            pause = await asyncio.to_thread(
                client.post,
                f"/api/device/{device_id}/command",
                json={"intent": "print_pause", "payload": {}, "correlationId": "late-pause"},
                headers=operator.headers,
            )
            assert pause.status_code == 202, pause.text  # the last known state: printing
            await work_queue(wired, database_url)
            assert _job_status(database, created["id"]) is FabricationStatus.PRINTING
            command = await asyncio.to_thread(
                client.get, f"/api/commands/{pause.json()['commandId']}", headers=operator.headers
            )
            await tracker.round()
            return str(created["id"]), command.json()
        finally:
            await driver.close()

    job_id, command = asyncio.run(scenario())
    assert command["status"] == "failed"
    assert "neither printing nor paused" in command["failureReason"]  # OctoPrint's words
    assert [h["status"] for h in command["statusHistory"]] == ["pending", "sent", "failed"]
    with database.unit_of_work() as s:
        aborted = s.get(FabricationJob, UUID(job_id))
        assert aborted is not None
        assert aborted.status is FabricationStatus.ABORTED
        assert aborted.details["reason"] == "the print was cancelled at the printer"
