"""An uploaded 3MF reduced to its geometry before any slicer sees it.

A 3MF is a ZIP archive. Besides the model (``3D/3dmodel.model``: meshes, components, build
items) it may carry slicer settings — ``Metadata/Slic3r_PE.config`` (which may set
``post_process``: a program PrusaSlicer runs), custom G-code settings, per-height custom
G-code (``Metadata/Prusa_Slicer_custom_gcode_per_print_z.xml``), per-object and per-range
settings, Bambu Studio and OrcaSlicer project settings — and object names that PrusaSlicer
copies into the G-code (a name holding a newline is a G-code line). None of it is the lab's
to trust, so:

1. :func:`check_archive` reads only the archive's directory and refuses (``UnsliceableModel``
   with reason ``UNSAFE_ARCHIVE``) before anything is decompressed: too many members, a
   member or all of them larger uncompressed than the limits, a member compressed past the
   ratio limit (a zip bomb), a member name that is absolute, holds ``..``, a backslash or a
   control character, or appears twice, an encrypted member, a compression other than
   stored or deflate (whose output Python cannot bound per read).
2. :func:`sanitize_3mf` writes a new archive holding only ``[Content_Types].xml``,
   ``_rels/.rels`` (both written here, fixed) and ``3D/3dmodel.model`` rebuilt from an
   allow-list: ``model`` (``unit``), ``resources``, ``object`` (``id``, ``type`` and a
   ``name`` cut to letters, digits and ``space _-.()+,``), ``mesh``, ``vertices``/``vertex``
   (``x y z``), ``triangles``/``triangle`` (``v1 v2 v3``), ``components``/``component``
   (``objectid transform``), ``build``/``item`` (``objectid transform printable``). Every
   other element (metadata, materials, painting, any other namespace) and every other
   member of the archive is dropped; a DTD or an entity declaration is refused.
   The model is streamed through expat, never held in memory whole.

Settings that must not be dropped silently are refused instead (reason
``UNSUPPORTED_CONTENT``): modifier, negative or support volumes (PrusaSlicer's
``volume_type``, Bambu's part ``subtype``) — without their settings they would print as
solid parts — and components kept in other model files (Bambu Studio and OrcaSlicer
projects), which PrusaSlicer 2.5 cannot read.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO
from xml.parsers import expat

from kittylab.fabrication.ports import Unsliceable, UnsliceableModel

CORE = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
PRODUCTION = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"
MODEL_PART = "3D/3dmodel.model"
PRUSA_MODEL_CONFIG = "Metadata/Slic3r_PE_model.config"
BAMBU_MODEL_CONFIG = "Metadata/model_settings.config"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\n'
    ' <Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\n'
    ' <Default Extension="model" '
    'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>\n'
    "</Types>\n"
)
RELATIONSHIPS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\n'
    ' <Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>\n'
    "</Relationships>\n"
)

# Element (in the core namespace) → the attributes kept, and the children it may have.
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "model": ("unit",),
    "resources": (),
    "object": ("id", "type", "name"),
    "mesh": (),
    "vertices": (),
    "vertex": ("x", "y", "z"),
    "triangles": (),
    "triangle": ("v1", "v2", "v3"),
    "components": (),
    "component": ("objectid", "transform"),
    "build": (),
    "item": ("objectid", "transform", "printable"),
}
_CHILDREN: dict[str, frozenset[str]] = {
    "": frozenset({"model"}),
    "model": frozenset({"resources", "build"}),
    "resources": frozenset({"object"}),
    "object": frozenset({"mesh", "components"}),
    "mesh": frozenset({"vertices", "triangles"}),
    "vertices": frozenset({"vertex"}),
    "triangles": frozenset({"triangle"}),
    "components": frozenset({"component"}),
    "build": frozenset({"item"}),
}
_LEAVES = frozenset({"vertex", "triangle", "component", "item"})
_FAST_LEAVES = {
    f"{CORE} vertex": ("vertices", '<vertex x="%s" y="%s" z="%s"/>\n', ("x", "y", "z")),
    f"{CORE} triangle": ("triangles", '<triangle v1="%s" v2="%s" v3="%s"/>\n', ("v1", "v2", "v3")),
}
_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_NAME_CHARACTERS = frozenset(" _-.()+,")
_NAME_LENGTH = 64
_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 20  # smaller members may compress as well as they like
_DIRECTORY_BYTES_PER_ENTRY = 512


@dataclass(frozen=True)
class ArchiveLimits:
    """What an uploaded archive may hold; past any of them it is refused unopened."""

    max_entries: int = 1000
    max_total_bytes: int = 1024**3
    """Sum of the members' uncompressed sizes."""
    max_entry_bytes: int = 512 * 1024**2
    max_ratio: float = 100.0
    """Uncompressed over compressed size, for members of 1 MiB and more."""


@dataclass(frozen=True)
class Sanitized:
    """What :func:`sanitize_3mf` kept and dropped."""

    objects: int
    dropped: tuple[str, ...]
    """Names of the archive members left out (settings, thumbnails, custom G-code…)."""


def check_archive(path: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The archive's members once its directory passes every check of the module
    docstring; raises ``UnsliceableModel`` (``UNSAFE_ARCHIVE``, or ``UNREADABLE`` for a
    file that is not a ZIP archive) otherwise. Decompresses nothing."""
    name = path.name
    with path.open("rb") as file:
        entries, directory_bytes = _directory_size(file, name)
        if entries > limits.max_entries:
            raise _unsafe(name, f"it has {entries} members (at most {limits.max_entries})")
        if directory_bytes > limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY:
            raise _unsafe(name, f"its directory is {directory_bytes} bytes long")
        try:
            with zipfile.ZipFile(file) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise _unreadable(name, f"not a readable ZIP archive ({exc})") from exc
    if len(members) > limits.max_entries:
        raise _unsafe(name, f"it has {len(members)} members (at most {limits.max_entries})")
    seen: set[str] = set()
    total = 0
    for member in members:
        _check_member_name(name, member.filename)
        key = member.filename.casefold()
        if key in seen:
            raise _unsafe(name, f"the member {member.filename!r} appears twice")
        seen.add(key)
        if member.flag_bits & 0x1:
            raise _unsafe(name, f"the member {member.filename!r} is encrypted")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _unsafe(
                name,
                f"the member {member.filename!r} uses compression method "
                f"{member.compress_type} (3MF allows stored and deflate only)",
            )
        if member.file_size > limits.max_entry_bytes:
            raise _unsafe(
                name,
                f"the member {member.filename!r} is {member.file_size} bytes uncompressed "
                f"(at most {limits.max_entry_bytes})",
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size >= _RATIO_FLOOR and ratio > limits.max_ratio:
            raise _unsafe(
                name,
                f"the member {member.filename!r} is compressed {ratio:.0f}:1 "
                f"(at most {limits.max_ratio:g}:1): a zip bomb",
            )
        total += member.file_size
        if total > limits.max_total_bytes:
            raise _unsafe(
                name, f"its members hold more than {limits.max_total_bytes} bytes uncompressed"
            )
    return members


def sanitize_3mf(source: Path, destination: Path, limits: ArchiveLimits) -> Sanitized:
    """Write the geometry of the 3MF ``source`` as a new 3MF at ``destination`` (see the
    module docstring). Raises ``UnsliceableModel``: ``UNSAFE_ARCHIVE`` (limits, names, a
    DTD), ``UNSUPPORTED_CONTENT`` (modifier volumes, a multi-file project), ``UNREADABLE``
    (not a ZIP archive, no model, malformed XML) or ``EMPTY`` (no object)."""
    name = source.name
    members = check_archive(source, limits)
    by_name = {member.filename.casefold(): member for member in members}
    model = by_name.get(MODEL_PART.casefold())
    if model is None:
        raise _unreadable(name, f"it holds no {MODEL_PART} (not a 3MF model)")
    try:
        with zipfile.ZipFile(source) as archive:
            for config, check in (
                (PRUSA_MODEL_CONFIG, _prusa_volume),
                (BAMBU_MODEL_CONFIG, _bambu_part),
            ):
                member = by_name.get(config.casefold())
                if member is not None:
                    _scan(name, archive, member, check)
            with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
                out.writestr("[Content_Types].xml", CONTENT_TYPES)
                out.writestr("_rels/.rels", RELATIONSHIPS)
                with (
                    archive.open(model) as reader,
                    out.open(MODEL_PART, "w", force_zip64=True) as writer,
                ):
                    objects = _GeometryWriter(name, writer).copy(reader)
    except zipfile.BadZipFile as exc:  # a CRC mismatch, a truncated member
        raise _unreadable(name, f"a damaged archive ({exc})") from exc
    if objects == 0:
        raise UnsliceableModel(Unsliceable.EMPTY, f"{name} holds no object")
    dropped = tuple(m.filename for m in members if m is not model and not m.is_dir())
    return Sanitized(objects=objects, dropped=dropped)


class _GeometryWriter:
    """Streams a 3MF model part through expat, writing back the allow-listed part."""

    def __init__(self, archive_name: str, out: IO[bytes]) -> None:
        self.archive_name = archive_name
        self.out = out
        self.pending: list[str] = []
        self.path: list[str] = []  # kept elements open around the parser's position
        self.skipping = 0  # depth inside an element that is dropped
        self.objects = 0
        self.parser = _parser(archive_name)
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end

    def copy(self, reader: IO[bytes]) -> int:
        self.pending.append('<?xml version="1.0" encoding="UTF-8"?>\n')
        _feed(self.archive_name, self.parser, reader, MODEL_PART, self._flush)
        self._flush()
        return self.objects

    def _flush(self) -> None:
        if self.pending:
            self.out.write("".join(self.pending).encode())
            self.pending.clear()

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        if self.skipping:
            self.skipping += 1
            return
        fast = _FAST_LEAVES.get(tag)
        if fast is not None and self.path[-1] == fast[0]:
            # Vertices and triangles are nearly all of a model: no generic path for them.
            template, (first, second, third) = fast[1], fast[2]
            try:
                line = template % (attributes[first], attributes[second], attributes[third])
            except KeyError as exc:
                raise _unreadable(
                    self.archive_name, f"{MODEL_PART}: a {tag.rpartition(' ')[2]} lacks {exc}"
                ) from None
            if line.count('"') != 6 or line.count("<") != 1 or "&" in line or ">" in line[:-3]:
                # Only numbers were expected: escape whatever else came.
                line = template % tuple(attributes[key].translate(_ESCAPE) for key in fast[2])
            self.pending.append(line)
            self.skipping = 1  # whatever it holds is dropped
            return
        namespace, _, local = tag.rpartition(" ")
        parent = self.path[-1] if self.path else ""
        if parent == "" and (namespace, local) != (CORE, "model"):
            raise _unreadable(self.archive_name, f"{MODEL_PART} is not a 3MF model")
        if namespace != CORE or local not in _CHILDREN.get(parent, ()):
            self.skipping = 1
            return
        if local == "component" and f"{PRODUCTION} path" in attributes:
            raise UnsliceableModel(
                Unsliceable.UNSUPPORTED_CONTENT,
                f"{self.archive_name} keeps its geometry in other model files (a Bambu "
                "Studio or OrcaSlicer project), which PrusaSlicer 2.5 cannot read: export "
                "it as STL or as a plain 3MF",
            )
        kept = [f"<{local}"]
        if local == "model":
            kept.append(f' xmlns="{CORE}"')
        elif local == "object":
            self.objects += 1
        for key in _ATTRIBUTES[local]:
            value = attributes.get(key)
            if value is None:
                continue
            if key == "name":
                value = _plain_name(value)
                if not value:
                    continue
            kept.append(f' {key}="{value.translate(_ESCAPE)}"')
        if local in _LEAVES:
            kept.append("/>\n")
            self.skipping = 1  # whatever it holds is dropped
        else:
            kept.append(">\n")
            self.path.append(local)
        self.pending.append("".join(kept))

    def _end(self, _tag: str) -> None:
        if self.skipping:
            self.skipping -= 1
            return
        self.pending.append(f"</{self.path.pop()}>\n")


def _plain_name(name: str) -> str:
    """An object name PrusaSlicer may copy into G-code comments: letters, digits and a few
    marks; anything else (a newline above all) becomes ``_``."""
    cleaned = "".join(c if c.isalnum() or c in _NAME_CHARACTERS else "_" for c in name)
    return cleaned.strip()[:_NAME_LENGTH]


def _prusa_volume(archive_name: str, tag: str, attributes: dict[str, str]) -> None:
    if tag != "metadata":
        return
    key, value = attributes.get("key"), attributes.get("value", "")
    if key == "volume_type" and value != "ModelPart":
        raise _settings_volume(archive_name, value)
    if key == "modifier" and value == "1":  # how files before PrusaSlicer 2.2 said it
        raise _settings_volume(archive_name, "modifier")


def _bambu_part(archive_name: str, tag: str, attributes: dict[str, str]) -> None:
    if tag == "part" and attributes.get("subtype", "normal_part") != "normal_part":
        raise _settings_volume(archive_name, attributes["subtype"])


def _settings_volume(archive_name: str, kind: str) -> UnsliceableModel:
    return UnsliceableModel(
        Unsliceable.UNSUPPORTED_CONTENT,
        f"{archive_name} has a {kind[:40]!r} volume (a modifier, negative or support "
        "volume); KittyLab slices geometry only and it would print as a solid part: "
        "remove it, or export the model parts alone",
    )


def _scan(
    archive_name: str,
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    check: Callable[[str, str, dict[str, str]], None],
) -> None:
    """Stream one XML member through ``check(archive_name, local_tag, attributes)``."""
    parser = _parser(archive_name, namespaces=False)
    parser.StartElementHandler = lambda tag, attributes: check(archive_name, tag, attributes)
    with archive.open(member) as reader:
        _feed(archive_name, parser, reader, member.filename, lambda: None)


def _parser(archive_name: str, *, namespaces: bool = True) -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=" " if namespaces else None)

    def refuse(*_args: object) -> None:
        raise _unsafe(archive_name, "its XML declares a DTD or entities")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def _feed(
    archive_name: str,
    parser: expat.XMLParserType,
    reader: IO[bytes],
    member: str,
    after_chunk: Callable[[], None],
) -> None:
    try:
        for chunk in _chunks(reader):
            parser.Parse(chunk, False)
            after_chunk()
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise _unreadable(
            archive_name, f"{member} is not well-formed XML (line {exc.lineno}: {exc})"
        ) from exc


def _chunks(reader: IO[bytes]) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def _directory_size(file: BinaryIO, name: str) -> tuple[int, int]:
    """Members and directory bytes the end record declares, read before ``zipfile`` parses
    a directory that may be huge."""
    size = file.seek(0, os.SEEK_END)
    tail_start = max(0, size - (22 + 65535))
    file.seek(tail_start)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise _unreadable(name, "not a ZIP archive (no end of central directory)")
    entries, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF:
        return entries, directory_bytes
    # ZIP64: a locator just before the end record points at the ZIP64 end record.
    end = tail_start + at
    file.seek(max(0, end - 20))
    locator = file.read(20)
    if len(locator) < 20 or locator[:4] != b"PK\x06\x07":
        raise _unreadable(name, "a damaged ZIP64 archive")
    (record_at,) = struct.unpack_from("<Q", locator, 8)
    file.seek(record_at)
    record = file.read(56)
    if len(record) < 56 or record[:4] != b"PK\x06\x06":
        raise _unreadable(name, "a damaged ZIP64 archive")
    entries64, directory64 = struct.unpack_from("<QQ", record, 32)
    return entries64, directory64


def _check_member_name(archive_name: str, member: str) -> None:
    parts = member.split("/")
    if (
        not member
        or member.startswith("/")
        or "\\" in member
        or ".." in parts
        or re.match(r"[A-Za-z]:", member)
        or any(ord(c) < 32 or ord(c) == 127 for c in member)
    ):
        raise _unsafe(archive_name, f"the member name {member[:200]!r} leaves the archive")


def _unsafe(archive_name: str, why: str) -> UnsliceableModel:
    return UnsliceableModel(Unsliceable.UNSAFE_ARCHIVE, f"{archive_name} was refused: {why}")


def _unreadable(archive_name: str, why: str) -> UnsliceableModel:
    return UnsliceableModel(Unsliceable.UNREADABLE, f"{archive_name}: {why}")
