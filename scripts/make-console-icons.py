#!/usr/bin/env python3
"""Draw the console's app icons (issue 17: installable as a PWA) into
src/kittylab/web/static/icons: a cat's head on the console's accent blue, at 192 and 512
pixels, and a maskable 512 (full bleed, the head inside the middle 80 %). Run it again
after changing a colour here; the PNGs are committed."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ACCENT = (11, 92, 173)
WHITE = (255, 255, 255)
OUT = Path(__file__).resolve().parents[1] / "src" / "kittylab" / "web" / "static" / "icons"
SCALE = 4  # drawn large, then scaled down: smooth edges


def head(draw: ImageDraw.ImageDraw, size: int, inset: float) -> None:
    """A cat's head: a round face with two ears and two eyes, centred."""
    s = size
    pad = s * inset
    box = s - 2 * pad
    cx = s / 2
    face = (pad + box * 0.12, pad + box * 0.30, s - pad - box * 0.12, s - pad - box * 0.06)
    ear_w, ear_h = box * 0.26, box * 0.40
    for side in (-1, 1):
        base_x = cx + side * box * 0.21
        draw.polygon(
            [
                (base_x - ear_w / 2, pad + box * 0.52),
                (base_x + side * box * 0.08, pad + box * 0.52 - ear_h),
                (base_x + ear_w / 2, pad + box * 0.52),
            ],
            fill=WHITE,
        )
    draw.ellipse(face, fill=WHITE)
    eye_w, eye_h = box * 0.10, box * 0.15
    for side in (-1, 1):
        ex = cx + side * box * 0.17
        ey = pad + box * 0.58
        draw.ellipse((ex - eye_w / 2, ey - eye_h / 2, ex + eye_w / 2, ey + eye_h / 2), fill=ACCENT)


def icon(size: int, *, maskable: bool) -> Image.Image:
    big = size * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if maskable:
        draw.rectangle((0, 0, big, big), fill=ACCENT)
        head(draw, big, 0.2)
    else:
        draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 0.22, fill=ACCENT)
        head(draw, big, 0.1)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    icon(192, maskable=False).save(OUT / "icon-192.png", optimize=True)
    icon(512, maskable=False).save(OUT / "icon-512.png", optimize=True)
    icon(512, maskable=True).save(OUT / "icon-maskable-512.png", optimize=True)
    print(f"icons written to {OUT}")


if __name__ == "__main__":
    main()
