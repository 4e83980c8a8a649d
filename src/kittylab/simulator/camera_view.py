"""What a simulated camera sees: a picture of its zone drawn from the states of the devices
in it (issue 14), as a PNG.

A title bar names the camera and its zone and gives the time; below it one panel per
device of the zone (the camera itself left out): a printer with its bed, the part growing
with the job's progress, its state and temperatures; a light glowing by its brightness; a
door shut and locked, or ajar; a power relay with its load; a sensor's readings. Drawn
with Pillow; pure apart from that (no I/O: bytes out).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from kittylab.domain.enums import DeviceKind
from kittylab.domain.simulated_lab import SimulatedDeviceSpec

WIDTH, HEIGHT = 640, 360
"""16:9, as the console shows a zone's camera."""
TITLE_HEIGHT = 44
COLUMNS = 3
BACKGROUND = (34, 38, 46)
PANEL = (52, 58, 70)
TEXT = (236, 239, 244)
DIM = (150, 158, 172)
AMBER = (245, 190, 60)
GREEN = (110, 200, 120)
RED = (225, 90, 80)
STEEL = (120, 130, 145)
PART = (90, 160, 235)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_PLAIN = str.maketrans({"µ": "u", "³": "3", "²": "2"})
"""Characters Pillow's built-in font lacks, as they are written in plain text."""


@cache
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def render(
    camera: SimulatedDeviceSpec,
    scene: Sequence[tuple[SimulatedDeviceSpec, Mapping[str, Any]]],
    at: datetime,
) -> bytes:
    """The PNG ``camera`` takes at ``at`` of ``scene`` (its zone's devices with their
    states)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, TITLE_HEIGHT), fill=(20, 22, 28))
    draw.text((12, 6), camera.name.translate(_PLAIN), fill=TEXT, font=_font(18))
    draw.text((12, 27), f"zone {camera.zone}", fill=DIM, font=_font(12))
    stamp = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    draw.text((WIDTH - 12, 14), stamp, fill=TEXT, font=_font(14), anchor="ra")
    devices = [(s, state) for s, state in scene if s.kind is not DeviceKind.CAMERA]
    if not devices:
        draw.text((WIDTH / 2, HEIGHT / 2), "nothing in view", fill=DIM, font=_font(16), anchor="mm")
    rows = max(1, -(-len(devices) // COLUMNS))
    width = (WIDTH - 8 * (COLUMNS + 1)) // COLUMNS
    height = (HEIGHT - TITLE_HEIGHT - 8 * (rows + 1)) // rows
    for index, (spec, state) in enumerate(devices):
        x = 8 + (index % COLUMNS) * (width + 8)
        y = TITLE_HEIGHT + 8 + (index // COLUMNS) * (height + 8)
        _panel(draw, (x, y, x + width, y + height), spec, state)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


Box = tuple[int, int, int, int]


def _panel(
    draw: ImageDraw.ImageDraw, box: Box, spec: SimulatedDeviceSpec, state: Mapping[str, Any]
) -> None:
    x0, y0, x1, y1 = box
    draw.rounded_rectangle(box, radius=6, fill=PANEL)
    draw.text((x0 + 8, y0 + 6), spec.name.translate(_PLAIN), fill=TEXT, font=_font(13))
    inner = (x0 + 8, y0 + 26, x1 - 8, y1 - 8)
    painter = _PAINTERS.get(spec.kind, _sensor)
    painter(draw, inner, state)


def _printer(draw: ImageDraw.ImageDraw, box: Box, state: Mapping[str, Any]) -> None:
    x0, y0, x1, y1 = box
    lines = 2
    bottom = y1 - 16 * lines - 4
    # The frame, the bed, and the part standing on it (as tall as the job is done).
    draw.rectangle((x0 + 4, y0, x1 - 4, bottom), outline=STEEL, width=2)
    bed_y = bottom - 10
    bed = _heater(state, "bed")
    draw.rectangle((x0 + 12, bed_y, x1 - 12, bed_y + 5), fill=_heat_colour(bed))
    progress = state.get("progress")
    done = float(progress) if isinstance(progress, int | float) else 0.0
    tallest = max(0, bed_y - y0 - 30)
    part_height = int(tallest * max(0.0, min(1.0, done)))
    middle = (x0 + x1) // 2
    if part_height > 0:
        draw.rectangle((middle - 18, bed_y - part_height, middle + 18, bed_y), fill=PART)
    # The gantry and nozzle, just above the part.
    head_y = bed_y - part_height - 14
    draw.line((x0 + 6, head_y, x1 - 6, head_y), fill=STEEL, width=3)
    nozzle = _heater(state, "nozzle")
    draw.polygon(
        [(middle - 7, head_y - 6), (middle + 7, head_y - 6), (middle, head_y + 8)],
        fill=_heat_colour(nozzle),
    )
    phase = str(state.get("state", "?"))
    colour = {"printing": GREEN, "heating": AMBER, "paused": AMBER, "failed": RED}.get(phase, TEXT)
    draw.text((x0, bottom + 4), f"{phase}  {done * 100:.0f} %", fill=colour, font=_font(12))
    temps = f"nozzle {nozzle:.0f} °C  bed {bed:.0f} °C"
    draw.text((x0, bottom + 20), temps, fill=DIM, font=_font(11))


def _heater(state: Mapping[str, Any], name: str) -> float:
    heater = state.get(name)
    actual = heater.get("actual") if isinstance(heater, Mapping) else None
    return float(actual) if isinstance(actual, int | float) else 0.0


def _heat_colour(celsius: float) -> tuple[int, int, int]:
    """Grey when cold, through amber to red as a heater warms up."""
    share = max(0.0, min(1.0, (celsius - 30) / 200))
    return (
        int(STEEL[0] + (RED[0] - STEEL[0]) * share),
        int(STEEL[1] + (RED[1] - STEEL[1]) * share),
        int(STEEL[2] + (RED[2] - STEEL[2]) * share),
    )


def _light(draw: ImageDraw.ImageDraw, box: Box, state: Mapping[str, Any]) -> None:
    x0, y0, x1, y1 = box
    on = state.get("on") is True
    level = state.get("brightness")
    brightness = int(level) if isinstance(level, int | float) else 0
    radius = max(8, min(x1 - x0, y1 - y0 - 20) // 3)
    cx, cy = (x0 + x1) // 2, y0 + (y1 - y0 - 20) // 2
    if on:
        glow = 0.35 + 0.65 * brightness / 100
        colour = (int(AMBER[0] * glow), int(AMBER[1] * glow), int(AMBER[2] * glow * 0.6))
    else:
        colour = (70, 74, 84)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    label = f"on {brightness} %" if on else "off"
    draw.text((x0, y1 - 14), label, fill=AMBER if on else DIM, font=_font(12))


def _door(draw: ImageDraw.ImageDraw, box: Box, state: Mapping[str, Any]) -> None:
    x0, y0, x1, y1 = box
    locked = state.get("locked") is True
    frame = (x0 + (x1 - x0) // 2 - 26, y0, x0 + (x1 - x0) // 2 + 26, y1 - 20)
    draw.rectangle(frame, outline=STEEL, width=3)
    if locked:
        draw.rectangle((frame[0] + 3, frame[1] + 3, frame[2] - 3, frame[3] - 3), fill=(96, 80, 64))
        draw.ellipse((frame[2] - 16, (frame[1] + frame[3]) // 2 - 4, frame[2] - 8,
                      (frame[1] + frame[3]) // 2 + 4), fill=RED)  # fmt: skip
    else:
        # Ajar: the leaf swung out, seen at an angle.
        draw.polygon(
            [
                (frame[0] + 3, frame[1] + 3),
                (frame[0] + 22, frame[1] + 12),
                (frame[0] + 22, frame[3] - 12),
                (frame[0] + 3, frame[3] - 3),
            ],
            fill=(96, 80, 64),
        )
    draw.text(
        (x0, y1 - 14), "locked" if locked else "unlocked", fill=RED if locked else GREEN,
        font=_font(12),
    )  # fmt: skip


def _power(draw: ImageDraw.ImageDraw, box: Box, state: Mapping[str, Any]) -> None:
    x0, y0, x1, y1 = box
    on = state.get("on") is True
    watts = state.get("watts")
    cx, cy = (x0 + x1) // 2, y0 + (y1 - y0 - 20) // 2
    draw.rounded_rectangle((cx - 22, cy - 26, cx + 22, cy + 26), radius=5, outline=STEEL, width=2)
    draw.ellipse((cx - 7, cy - 7, cx + 7, cy + 7), fill=GREEN if on else (70, 74, 84))
    load = f"on, {watts:.0f} W" if on and isinstance(watts, int | float) else "off"
    draw.text((x0, y1 - 14), load, fill=GREEN if on else DIM, font=_font(12))


def _sensor(draw: ImageDraw.ImageDraw, box: Box, state: Mapping[str, Any]) -> None:
    x0, y0, _, _ = box
    y = y0
    for name, reading in state.items():
        if isinstance(reading, Mapping) and isinstance(reading.get("value"), int | float):
            unit = str(reading.get("unit", "")).translate(_PLAIN)
            text = f"{name.replace('_', ' ')}: {reading['value']:.1f} {unit}"
            draw.text((x0, y), text.rstrip(), fill=TEXT, font=_font(12))
            y += 18


_PAINTERS = {
    DeviceKind.PRINTER: _printer,
    DeviceKind.LIGHT: _light,
    DeviceKind.DOOR: _door,
    DeviceKind.POWER: _power,
    DeviceKind.SENSOR: _sensor,
}
