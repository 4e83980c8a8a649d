"""The simulator's device list (issue 14) and what its cameras draw."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from PIL import Image

from kittylab.domain.devices import INTENT_CATALOGUE
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.simulated_lab import (
    MAX_BYTES,
    SimulatedDeviceSpec,
    camera_snapshot_url,
    decode,
    encode,
)
from kittylab.simulator.camera_view import HEIGHT, WIDTH, render
from kittylab.simulator.devices import build_simulator

CUSTOM = {"type": "object", "properties": {"hue": {"type": "integer"}}}
LAB = [
    SimulatedDeviceSpec(
        "farm-lights",
        DeviceKind.LIGHT,
        "print-farm",
        "farm lights",
        {"light_on": dict(INTENT_CATALOGUE["light_on"]), "set_colour": CUSTOM},
    ),
    SimulatedDeviceSpec(
        "farm-climate", DeviceKind.SENSOR, "print-farm", "farm climate", measures=("humidity",)
    ),
]


def test_the_device_list_travels_standard_schemas_as_null_and_reads_back_whole() -> None:
    message = encode(LAB)
    lights = next(d for d in message["devices"] if d["externalId"] == "farm-lights")
    assert lights["capabilities"] == {"light_on": None, "set_colour": CUSTOM}
    assert decode(json.dumps(message).encode()) == sorted(LAB, key=lambda d: d.external_id)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"[1]", "devices"),
        (b"NaN", "devices"),
        (b'{"devices": [{"externalId": "x", "kind": "toaster", "zone": "z", "name": "n"}]}',
         "devices.0.kind"),
        (b'{"devices": [{"externalId": "", "kind": "light", "zone": "z", "name": "n"}]}',
         "devices.0.externalId"),
        (b'{"devices": [{"externalId": "x", "kind": "light", "zone": "z", "name": "n",'
         b' "capabilities": {"warp": null}}]}', "devices.0.capabilities.warp"),
        (b'{"devices": [{"externalId": "x", "kind": "sensor", "zone": "z", "name": "n",'
         b' "measures": [1]}]}', "devices.0.measures"),
    ],
)  # fmt: skip
def test_a_malformed_device_list_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode(raw)
    assert refused.value.field == field


def test_an_oversized_device_list_is_refused_before_it_is_read() -> None:
    with pytest.raises(PayloadTooLarge):
        decode(b" " * (MAX_BYTES + 1))


def test_a_simulated_cameras_url_is_on_the_simulators_server() -> None:
    assert (
        camera_snapshot_url("http://127.0.0.1:8091/", "laser-cam")
        == "http://127.0.0.1:8091/cameras/laser-cam/snapshot.png"
    )


def test_a_camera_draws_every_kind_in_its_zone_as_a_png() -> None:
    zone = [
        SimulatedDeviceSpec(f"d-{kind.value}", kind, "farm", f"{kind.value} µ³", measures=("air_quality",))
        for kind in DeviceKind
    ]  # fmt: skip
    camera = next(s for s in zone if s.kind is DeviceKind.CAMERA)
    scene = [(spec, build_simulator(spec).snapshot()) for spec in zone]
    png = render(camera, scene, datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    empty = render(camera, [(camera, {})], datetime(2026, 12, 7, tzinfo=UTC))
    assert empty.startswith(b"\x89PNG")
