"""The Home Assistant driver against a protocol-level Home Assistant REST server
(tests/peers/homeassistant_peer.py): Home Assistant itself cannot run here."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from kittylab.adapters.devices.homeassistant import HomeAssistantDriver
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused
from tests.peers.homeassistant_peer import TINY_JPEG, HomeAssistantPeer

T = TypeVar("T")
TOKEN = "test-long-lived-token-0123456789abcdef"


@pytest.fixture(scope="module")
def _peer() -> Iterator[HomeAssistantPeer]:
    peer = HomeAssistantPeer(TOKEN)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def hass(_peer: HomeAssistantPeer, monkeypatch: pytest.MonkeyPatch) -> HomeAssistantPeer:
    _peer.reset()
    monkeypatch.setenv("HA_TOKEN", TOKEN)
    return _peer


def device(hass: HomeAssistantPeer, kind: DeviceKind, entity_id: str, **extra: Any) -> DeviceTarget:
    return DeviceTarget(
        id=uuid4(),
        external_id=entity_id.split(".", 1)[1],
        kind=kind,
        integration="homeassistant",
        connection={"url": hass.url, "token": "${HA_TOKEN}", "entity_id": entity_id, **extra},
    )


def run(scenario: Callable[[HomeAssistantDriver], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        driver = HomeAssistantDriver(**kwargs)
        try:
            return await scenario(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


def test_light_intents_switch_and_dim_the_entity(hass: HomeAssistantPeer) -> None:
    light = device(hass, DeviceKind.LIGHT, "light.bench")

    async def scenario(driver: HomeAssistantDriver) -> list[dict[str, Any]]:
        states = [await driver.state(light)]
        await driver.send(light, "light_on", {})
        states.append(await driver.state(light))
        await driver.send(light, "light_set_brightness", {"brightness": 40})
        states.append(await driver.state(light))
        await driver.send(light, "light_set_brightness", {"brightness": 0})
        states.append(await driver.state(light))
        await driver.send(light, "light_on", {})
        await driver.send(light, "light_off", {})
        states.append(await driver.state(light))
        return states

    assert run(scenario) == [
        {"on": False, "brightness": 0},
        {"on": True, "brightness": 100},
        {"on": True, "brightness": 40},
        {"on": False, "brightness": 0},
        {"on": False, "brightness": 0},
    ]
    assert ("light", "turn_on", {"entity_id": "light.bench", "brightness_pct": 40}) in hass.calls
    assert hass.entities["light.bench"]["state"] == "off"


def test_a_lamp_on_a_smart_plug_switches_but_cannot_dim(hass: HomeAssistantPeer) -> None:
    lamp = device(hass, DeviceKind.LIGHT, "switch.bench_plug_light")

    async def scenario(driver: HomeAssistantDriver) -> dict[str, Any]:
        await driver.send(lamp, "light_on", {})
        with pytest.raises(DeviceRefused, match="cannot be dimmed"):
            await driver.send(lamp, "light_set_brightness", {"brightness": 50})
        return await driver.state(lamp)

    assert run(scenario) == {"on": True}


def test_door_lock_and_unlock_move_the_lock(hass: HomeAssistantPeer) -> None:
    door = device(hass, DeviceKind.DOOR, "lock.lab_door")

    async def scenario(driver: HomeAssistantDriver) -> list[dict[str, Any]]:
        states = [await driver.state(door)]
        await driver.send(door, "door_unlock", {})
        states.append(await driver.state(door))
        await driver.send(door, "door_lock", {})
        states.append(await driver.state(door))
        return states

    assert run(scenario) == [{"locked": True}, {"locked": False}, {"locked": True}]
    assert [c[:2] for c in hass.calls] == [("lock", "unlock"), ("lock", "lock")]


def test_a_jammed_lock_refuses_with_home_assistants_reason(hass: HomeAssistantPeer) -> None:
    hass.put("lock.lab_door", "jammed", friendly_name="Lab door")
    door = device(hass, DeviceKind.DOOR, "lock.lab_door")

    async def scenario(driver: HomeAssistantDriver) -> tuple[str, dict[str, Any]]:
        with pytest.raises(DeviceRefused) as refused:
            await driver.send(door, "door_unlock", {})
        return str(refused.value), await driver.state(door)

    reason, state = run(scenario)
    assert "could not lock.unlock lock.lab_door" in reason
    assert "500 Internal Server Error" in reason
    assert state == {"locked": False}  # jammed is not locked


def test_power_relay_switches_and_reports_its_load(hass: HomeAssistantPeer) -> None:
    relay = device(hass, DeviceKind.POWER, "switch.laser_power")

    async def scenario(driver: HomeAssistantDriver) -> list[dict[str, Any]]:
        await driver.send(relay, "power_on", {})
        on = await driver.state(relay)
        await driver.send(relay, "power_off", {})
        return [on, await driver.state(relay)]

    assert run(scenario) == [{"on": True, "watts": 1450.0}, {"on": False, "watts": 0.0}]


def test_camera_snapshot_fetches_the_image_and_counts_it(hass: HomeAssistantPeer) -> None:
    camera = device(hass, DeviceKind.CAMERA, "camera.bench_cam")

    async def scenario(driver: HomeAssistantDriver) -> tuple[dict[str, Any], bytes | None]:
        await driver.send(camera, "camera_snapshot", {})
        await driver.send(camera, "camera_snapshot", {})
        return await driver.state(camera), driver.latest_snapshot(camera)

    state, image = run(scenario)
    assert state == {"streaming": False, "snapshots_taken": 2}
    assert image == TINY_JPEG
    assert hass.camera_requests == 2


def test_sensor_read_asks_home_assistant_to_poll_and_reports_the_new_value(
    hass: HomeAssistantPeer,
) -> None:
    sensor = device(hass, DeviceKind.SENSOR, "sensor.lab_temperature")
    hass.pending_readings["sensor.lab_temperature"] = "23.25"

    async def scenario(driver: HomeAssistantDriver) -> list[dict[str, Any]]:
        before = await driver.state(sensor)
        await driver.send(sensor, "sensor_read", {})
        return [before, await driver.state(sensor)]

    assert run(scenario) == [
        {"temperature": {"value": 21.5, "unit": "°C"}},
        {"temperature": {"value": 23.25, "unit": "°C"}},
    ]
    assert hass.calls == [
        ("homeassistant", "update_entity", {"entity_id": "sensor.lab_temperature"})
    ]


def test_invalid_service_data_is_refused(hass: HomeAssistantPeer) -> None:
    light = device(hass, DeviceKind.LIGHT, "light.bench")

    async def scenario(driver: HomeAssistantDriver) -> None:
        # The catalogue's schema keeps brightness within 0-100; this bypasses it to see
        # what Home Assistant answers to data it rejects.
        await driver.send(light, "light_set_brightness", {"brightness": 180})

    with pytest.raises(DeviceRefused, match=r"refused light\.turn_on \(400: Bad Request\)"):
        run(scenario)


def test_intents_outside_the_kind_are_refused_without_a_service_call(
    hass: HomeAssistantPeer,
) -> None:
    door = device(hass, DeviceKind.DOOR, "lock.lab_door")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.send(door, "power_on", {})

    with pytest.raises(DeviceRefused, match="cannot power_on a door"):
        run(scenario)
    assert hass.calls == []


def test_a_wrong_token_is_unavailable_and_never_shown(
    hass: HomeAssistantPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HA_TOKEN", "wrong-token-value")
    light = device(hass, DeviceKind.LIGHT, "light.bench")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.send(light, "light_on", {})

    with pytest.raises(DeviceUnavailable, match="rejected the token") as caught:
        run(scenario)
    assert "wrong-token-value" not in str(caught.value)
    assert hass.entities["light.bench"]["state"] == "off"


def test_an_unknown_entity_is_unavailable_before_any_service_call(
    hass: HomeAssistantPeer,
) -> None:
    ghost = device(hass, DeviceKind.LIGHT, "light.ghost")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.send(ghost, "light_on", {})

    with pytest.raises(DeviceUnavailable, match=r"has no entity light\.ghost"):
        run(scenario)
    assert hass.calls == []


def test_an_entity_home_assistant_reports_unavailable_is_unavailable(
    hass: HomeAssistantPeer,
) -> None:
    lamp = device(hass, DeviceKind.LIGHT, "light.unplugged")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.state(lamp)

    with pytest.raises(DeviceUnavailable, match=r"light\.unplugged unavailable"):
        run(scenario)


def test_an_entity_of_another_domain_is_a_configuration_error(hass: HomeAssistantPeer) -> None:
    door = device(hass, DeviceKind.DOOR, "switch.laser_power")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.state(door)

    with pytest.raises(DeviceUnavailable, match="not a lock entity for a door"):
        run(scenario)


def test_an_unreachable_home_assistant_is_unavailable_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    light = DeviceTarget(
        id=uuid4(),
        external_id="far",
        kind=DeviceKind.LIGHT,
        integration="homeassistant",
        connection={"url": f"http://127.0.0.1:{port}", "token": "t", "entity_id": "light.x"},
    )

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.send(light, "light_on", {})

    started = time.monotonic()
    with pytest.raises(DeviceUnavailable, match="unreachable"):
        run(scenario)
    assert time.monotonic() - started < 2.0


def test_a_home_assistant_that_never_answers_is_unavailable_after_the_timeout() -> None:
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
    light = DeviceTarget(
        id=uuid4(),
        external_id="mute",
        kind=DeviceKind.LIGHT,
        integration="homeassistant",
        connection={
            "url": f"http://127.0.0.1:{listener.getsockname()[1]}",
            "token": "t",
            "entity_id": "light.x",
        },
    )

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.state(light)

    started = time.monotonic()
    try:
        with pytest.raises(DeviceUnavailable, match=r"did not answer within 0\.5 s"):
            run(scenario, timeout=0.5)
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert time.monotonic() - started < 3.0


def test_debug_logs_never_show_the_token(
    hass: HomeAssistantPeer, caplog: pytest.LogCaptureFixture
) -> None:
    light = device(hass, DeviceKind.LIGHT, "light.bench")

    async def scenario(driver: HomeAssistantDriver) -> None:
        await driver.send(light, "light_on", {})
        await driver.state(light)

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert caplog.records  # httpx and httpcore did log the requests
    assert TOKEN not in caplog.text
