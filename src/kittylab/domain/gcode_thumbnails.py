"""The preview image a slicer embeds in G-code (issue 17, the console's prints). Pure.

PrusaSlicer, SuperSlicer, OrcaSlicer and Cura (with its thumbnail script) write it as
comment lines near the top of the file::

    ; thumbnail begin 220x124 11020
    ; iVBORw0KGgoAAAANSUhEUgAAANwAAAB8CAYAAAAm2Hc...
    ; thumbnail end

``thumbnail_JPG`` and ``thumbnail_QOI`` blocks follow the same shape. Browsers show PNG and
JPEG, so those are taken (the largest, by pixels); a block that does not decode to the
image it claims is ignored, never served.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

_BEGIN = re.compile(
    r"^;\s*thumbnail(?:_(?P<format>PNG|JPG|QOI))?\s+begin\s+(?P<w>\d+)x(?P<h>\d+)\s+\d+\s*$"
)
_END = re.compile(r"^;\s*thumbnail(?:_(?:PNG|JPG|QOI))?\s+end\s*$")
_SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Thumbnail:
    content_type: str
    width: int
    height: int
    data: bytes


def find_thumbnail(lines: Iterable[str]) -> Thumbnail | None:
    """The largest PNG or JPEG preview embedded in G-code ``lines``; None without one."""
    best: Thumbnail | None = None
    block: list[str] | None = None
    kind = ""
    size = (0, 0)
    for raw in lines:
        line = raw.strip()
        if block is None:
            begin = _BEGIN.match(line)
            if begin is not None:
                block, kind = [], begin.group("format") or "PNG"
                size = (int(begin.group("w")), int(begin.group("h")))
            continue
        if _END.match(line):
            found = _decode(kind, size, block)
            if found is not None and (best is None or _pixels(found) > _pixels(best)):
                best = found
            block = None
        elif line.startswith(";"):
            block.append(line[1:].strip())
            if sum(map(len, block)) > MAX_THUMBNAIL_BYTES * 4 // 3 + 4:
                block = None  # not a thumbnail a slicer wrote: ignored
        else:
            block = None  # G-code inside a block: not a thumbnail
    return best


def _decode(kind: str, size: tuple[int, int], block: list[str]) -> Thumbnail | None:
    content_type = {"PNG": "image/png", "JPG": "image/jpeg"}.get(kind)
    if content_type is None:
        return None  # QOI: no browser shows it
    try:
        data = base64.b64decode("".join(block), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not data.startswith(_SIGNATURES[content_type]):
        return None
    return Thumbnail(content_type, size[0], size[1], data)


def _pixels(thumbnail: Thumbnail) -> int:
    return thumbnail.width * thumbnail.height
