"""The slicer port on the PrusaSlicer command line (Debian ``prusa-slicer``, 2.5).

Runs headless: ``prusa-slicer --export-gcode`` needs no display, and ``--datadir`` points at
a throwaway folder so it neither reads nor writes anyone's PrusaSlicer settings. A slice
loads three profile files (``profiles/printer/<name>.ini``, ``profiles/filament/<name>.ini``,
``profiles/print/<name>.ini``).

Models are untrusted input. A 3MF is first reduced to its geometry (``threemf``: archive
limits checked before anything is decompressed; settings, custom G-code and every other
member dropped; object names made plain), and the model is handed to PrusaSlicer under a
fixed name in a work folder of its own. Whatever a file could still carry, every setting
that can run a program or put text into the G-code (:data:`PINNED`: ``post_process``, the
custom G-code settings, ``gcode_substitutions``…) is set on the command line — which
overrides the profiles and any file — to the profiles' value, or empty. PrusaSlicer runs
confined (``kittylab.adapters.sandbox``): a clean environment (``HOME`` and ``TMPDIR`` its
work folder), no network, limits on its address space, CPU time and the size of what it
writes (a G-code past ``max_gcode_bytes`` stops it), its process group killed past its
timeout.

Before slicing, ``prusa-slicer --info`` reports the model's size and whether its mesh is
closed, so an empty file, an open (non-manifold) mesh or a model larger than the printer get
a clear :class:`UnsliceableModel` instead of PrusaSlicer's own terse or crashing answer
(2.5 aborts with SIGABRT when objects do not fit the bed). PrusaSlicer's silent mesh
repair is not relied on: a mesh that needs it is refused, so what prints is what was
modelled.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kittylab.adapters import sandbox
from kittylab.adapters.slicer.gcode_summary import SummaryMissing, read_summary
from kittylab.adapters.slicer.threemf import ArchiveLimits, sanitize_3mf
from kittylab.domain.errors import ValidationFailed
from kittylab.fabrication.ports import (
    BuildVolume,
    ModelFormat,
    ModelSize,
    SliceProfile,
    SlicerError,
    SliceResult,
    SlicerTimeout,
    Unsliceable,
    UnsliceableModel,
)

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILE_KINDS = ("printer", "filament", "print")
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_OUTPUT_TAIL = 1500
# Tolerance for bounding boxes computed in float by PrusaSlicer (a 220.000001 mm part fits).
_EPSILON_MM = 1e-3

PINNED: dict[str, tuple[str, str]] = {
    # option: (command-line flag, value when no profile sets it)
    "post_process": ("--post-process", ""),
    "start_gcode": ("--start-gcode", ""),
    "end_gcode": ("--end-gcode", ""),
    "before_layer_gcode": ("--before-layer-gcode", ""),
    "layer_gcode": ("--layer-gcode", ""),
    "toolchange_gcode": ("--toolchange-gcode", ""),
    "between_objects_gcode": ("--between-objects-gcode", ""),
    "color_change_gcode": ("--color-change-gcode", ""),
    "pause_print_gcode": ("--pause-print-gcode", ""),
    "template_custom_gcode": ("--template-custom-gcode", ""),
    # One empty string per extruder ("" would be no value at all, read past by 2.5).
    "start_filament_gcode": ("--start-filament-gcode", '""'),
    "end_filament_gcode": ("--end-filament-gcode", '""'),
    "gcode_substitutions": ("--gcode-substitutions", ""),
    # The letter written after every extruding move's coordinates.
    "extrusion_axis": ("--extrusion-axis", "E"),
    # Copied into the header as comments, but a carriage return in them starts a new line.
    "notes": ("--notes", ""),
}
"""Every PrusaSlicer 2.5 setting that runs a program or writes its text into the G-code
(from ``prusa-slicer --help-fff``; the other notes and names reach only the G-code's
settings block, escaped). Lists (``post_process``, the filament G-code,
``gcode_substitutions``) are passed as the profile files write them, which PrusaSlicer
parses alike; single strings are passed unescaped, since PrusaSlicer takes those from the
command line verbatim."""
_LISTS = frozenset(
    {"post_process", "start_filament_gcode", "end_filament_gcode", "gcode_substitutions"}
)


@dataclass(frozen=True)
class _Run:
    returncode: int
    output: str


class PrusaSlicer:
    """Implements the ``Slicer`` port. ``binary`` is a path or a name on PATH."""

    def __init__(
        self,
        binary: str = "prusa-slicer",
        *,
        profile_dir: Path = PROFILE_DIR,
        timeout_seconds: float = 300.0,
        info_timeout_seconds: float = 60.0,
        memory_bytes: int = 4 * 1024**3,
        cpu_seconds: int | None = None,
        max_gcode_bytes: int = 1024**3,
        archive_limits: ArchiveLimits | None = None,
    ) -> None:
        self.binary = binary
        self.profile_dir = profile_dir
        self.timeout_seconds = timeout_seconds
        self.info_timeout_seconds = info_timeout_seconds
        self.memory_bytes = memory_bytes
        """Address-space limit of each run; 0 leaves it uncapped."""
        self.cpu_seconds = cpu_seconds
        """CPU time of each run over all threads; ``None``: its timeout times the CPUs."""
        self.max_gcode_bytes = max_gcode_bytes
        """Largest file a run may write (``RLIMIT_FSIZE``)."""
        self.archive_limits = archive_limits or ArchiveLimits()

    # -- profiles -----------------------------------------------------------------------

    def profiles(self) -> dict[str, list[str]]:
        return {
            kind: sorted(p.stem for p in (self.profile_dir / kind).glob("*.ini"))
            for kind in PROFILE_KINDS
        }

    def _profile_file(self, kind: str, name: str) -> Path:
        path = self.profile_dir / kind / f"{name}.ini"
        if not _PROFILE_NAME.fullmatch(name) or not path.is_file():
            known = ", ".join(self.profiles()[kind]) or "none"
            raise ValidationFailed("profile", f"no {kind} profile {name!r} (known: {known})")
        return path

    def build_volume(self, printer: str) -> BuildVolume:
        settings = _read_ini(self._profile_file("printer", printer))
        try:
            points = [
                tuple(float(v) for v in point.split("x"))
                for point in settings["bed_shape"].split(",")
            ]
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            height = float(settings["max_print_height"])
        except (KeyError, ValueError, IndexError) as exc:
            raise SlicerError(
                f"printer profile {printer!r} needs bed_shape (0x0,220x0,…) and max_print_height"
            ) from exc
        return BuildVolume(max(xs) - min(xs), max(ys) - min(ys), height)

    # -- slicing ------------------------------------------------------------------------

    def inspect(self, model: Path) -> ModelSize:
        """Size and closedness of the model, from ``prusa-slicer --info``."""
        model_format = self._check_input(model)
        with tempfile.TemporaryDirectory(prefix="kittylab-slicer-") as work:
            prepared = self._prepare(model, model_format, Path(work))
            return self._inspect(prepared, model, model_format, Path(work))

    def slice(self, model: Path, output: Path, *, profile: SliceProfile) -> SliceResult:
        model_format = self._check_input(model)
        loads = [self._profile_file(kind, getattr(profile, kind)) for kind in PROFILE_KINDS]
        volume = self.build_volume(profile.printer)
        with tempfile.TemporaryDirectory(prefix="kittylab-slicer-") as folder:
            work = Path(folder)
            prepared = self._prepare(model, model_format, work)
            size = self._inspect(prepared, model, model_format, work)
            _check_fits(model, size, volume, profile)
            produced = work / "out.gcode"
            arguments = [f"--load={path}" for path in loads]
            arguments += pinned_arguments(loads)
            arguments += ["--export-gcode", f"--output={produced}", str(prepared)]
            run = self._run(arguments, work, self.timeout_seconds)
            if run.returncode != 0 or not produced.is_file():
                raise self._refusal(run, model, model_format)
            try:
                summary = read_summary(produced)
            except SummaryMissing as exc:
                raise SlicerError(f"PrusaSlicer's G-code for {model.name} has {exc}") from exc
            gcode_bytes = produced.stat().st_size
            _publish(produced, output)
        return SliceResult(
            gcode_path=output,
            profile=profile,
            model_format=model_format,
            model_size=size,
            estimated_seconds=summary.estimated_seconds,
            silent_mode_seconds=summary.silent_mode_seconds,
            filament_mm=summary.filament_mm,
            filament_cm3=summary.filament_cm3,
            filament_g=summary.filament_g,
            gcode_bytes=gcode_bytes,
            slicer_version=summary.generator or "PrusaSlicer",
        )

    # -- internals ----------------------------------------------------------------------

    def _check_input(self, model: Path) -> ModelFormat:
        model_format = ModelFormat.of(model)
        if model_format is None:
            known = ", ".join(f".{f.value}" for f in ModelFormat)
            raise UnsliceableModel(
                Unsliceable.UNSUPPORTED_FORMAT,
                f"{model.name}: not a model format the slicer takes ({known}, .stp)",
            )
        try:
            size = model.stat().st_size
        except OSError as exc:
            raise UnsliceableModel(
                Unsliceable.UNREADABLE, f"{model.name}: cannot read it ({exc.strerror})"
            ) from exc
        if size == 0:
            raise UnsliceableModel(Unsliceable.EMPTY, f"{model.name} is an empty file")
        return model_format

    def _prepare(self, model: Path, model_format: ModelFormat, work: Path) -> Path:
        """The model as PrusaSlicer gets it, in ``work`` under a fixed name (object names
        come from file names): a 3MF rewritten to geometry only, any other format linked."""
        prepared = work / f"model.{model_format.value}"
        if model_format is ModelFormat.THREE_MF:
            sanitize_3mf(model, prepared, self.archive_limits)
        else:
            prepared.symlink_to(model.resolve())
        return prepared

    def _inspect(
        self, prepared: Path, model: Path, model_format: ModelFormat, work: Path
    ) -> ModelSize:
        run = self._run(["--info", str(prepared)], work, self.info_timeout_seconds)
        if run.returncode != 0 or "size_x" not in run.output:
            raise self._refusal(run, model, model_format)
        return _parse_info(run.output, model)

    def _run(self, arguments: list[str], work: Path, timeout: float) -> _Run:
        executable = shutil.which(self.binary)
        if executable is None:
            raise SlicerError(
                f"cannot run PrusaSlicer ({self.binary}): not found; install it with "
                "scripts/install-system-deps.sh or set KITTYLAB_SLICER__BINARY"
            )
        command = [executable, f"--datadir={work / 'datadir'}", "--loglevel=1", *arguments]
        cpu = self.cpu_seconds or int(timeout * (os.cpu_count() or 1)) + 1
        try:
            done = sandbox.run(
                command,
                limits=sandbox.Limits(
                    memory_bytes=self.memory_bytes,
                    cpu_seconds=cpu,
                    file_size_bytes=self.max_gcode_bytes,
                ),
                timeout_seconds=timeout,
                env=sandbox.clean_environment(work),
                cwd=work,
            )
        except subprocess.TimeoutExpired:
            raise SlicerTimeout(
                f"PrusaSlicer did not finish within {timeout:g} s and was stopped"
            ) from None
        except sandbox.SandboxError as exc:
            raise SlicerError(f"cannot run PrusaSlicer ({self.binary}) confined: {exc}") from exc
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        return _Run(done.returncode, output)

    def _refusal(self, run: _Run, model: Path, model_format: ModelFormat) -> Exception:
        """Turn a failed run into the most specific error its output supports."""
        text = run.output
        if "could not fit on the bed" in text:
            return UnsliceableModel(
                Unsliceable.TOO_LARGE, f"{model.name} does not fit on the printer's bed"
            )
        if "No layers were detected" in text:
            return UnsliceableModel(
                Unsliceable.NOTHING_TO_PRINT,
                f"{model.name} gives no printable layers (too thin, or not a solid)",
            )
        if "empty file" in text or "number_of_facets = 0" in text:
            return UnsliceableModel(Unsliceable.EMPTY, f"{model.name} holds no geometry")
        if "Loading of a model file failed" in text or "StepFile" in text:
            return UnsliceableModel(
                Unsliceable.UNREADABLE,
                f"{model.name} is not a readable {model_format.value.upper()} file",
            )
        if run.returncode == -signal.SIGXFSZ:
            return SlicerError(
                f"PrusaSlicer's G-code passed its size limit ({_size(self.max_gcode_bytes)}) "
                f"and the slice was stopped: {model.name} is too large or too detailed for "
                "it (KITTYLAB_SLICER__MAX_GCODE_MB)"
            )
        if run.returncode == -signal.SIGXCPU:
            return SlicerError(
                f"PrusaSlicer used up its CPU time on {model.name} and was stopped "
                "(KITTYLAB_SLICER__CPU_SECONDS)"
            )
        if "bad_alloc" in text or "std::bad_alloc" in text:
            return SlicerError(
                f"PrusaSlicer ran out of its memory limit on {model.name} "
                "(KITTYLAB_SLICER__MEMORY_MB)"
            )
        if run.returncode < 0:
            return SlicerError(f"PrusaSlicer was killed by signal {-run.returncode}: {_tail(text)}")
        return SlicerError(f"PrusaSlicer failed (exit {run.returncode}): {_tail(text)}")


def pinned_arguments(profile_files: Sequence[Path]) -> list[str]:
    """Command-line arguments setting every :data:`PINNED` option to its value in
    ``profile_files`` (the last file that sets it wins, as with ``--load``), or to the
    harmless default. Each value is a separate argument: PrusaSlicer reads ``--flag=`` with
    nothing after ``=`` as a flag whose value is the *next* argument."""
    merged: dict[str, str] = {}
    for path in profile_files:
        merged.update(_read_ini(path))
    arguments: list[str] = []
    for option, (flag, default) in PINNED.items():
        value = merged.get(option)
        if value is None:
            value = default
        elif option not in _LISTS:
            value = _unescape(value)
        arguments += [flag, value]
    return arguments


def _unescape(value: str) -> str:
    """A single string as PrusaSlicer reads it from a profile (``unescape_string_cstyle``):
    ``\\n`` and ``\\r`` are line breaks, ``\\`` followed by any other character is
    that character."""
    out: list[str] = []
    characters = iter(value)
    for character in characters:
        if character == "\\":
            escaped = next(characters, "")
            out.append({"n": "\n", "r": "\r"}.get(escaped, escaped))
        else:
            out.append(character)
    return "".join(out)


def _check_fits(model: Path, size: ModelSize, volume: BuildVolume, profile: SliceProfile) -> None:
    if not size.manifold:
        raise UnsliceableModel(
            Unsliceable.NOT_MANIFOLD,
            f"{model.name} is not a closed (manifold) mesh: {size.open_edges} open "
            "edges; repair it (or export it again as a solid) before slicing",
        )
    if (
        size.x > volume.x + _EPSILON_MM
        or size.y > volume.y + _EPSILON_MM
        or size.z > volume.z + _EPSILON_MM
    ):
        raise UnsliceableModel(
            Unsliceable.TOO_LARGE,
            f"{model.name} is {_mm(size.x)} x {_mm(size.y)} x {_mm(size.z)} mm; printer "
            f"{profile.printer!r} builds at most {_mm(volume.x)} x {_mm(volume.y)} x "
            f"{_mm(volume.z)} mm",
        )


def _publish(produced: Path, output: Path) -> None:
    """Put the G-code at ``output`` whole or not at all: copied beside it under a
    temporary name, then renamed over it."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlicerError(f"cannot write G-code to {output.parent}: {exc.strerror}") from exc
    partial = output.with_name(f".{output.stem}-{secrets.token_hex(4)}.partial.gcode")
    try:
        shutil.copyfile(produced, partial)
        os.replace(partial, output)
    except OSError as exc:
        raise SlicerError(f"cannot write G-code to {output}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _read_ini(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def _parse_info(output: str, model: Path) -> ModelSize:
    """Combine ``--info``'s blocks (one per object of a 3MF, one for an STL or STEP): the
    largest extent of any object per axis, closed only when every object is."""
    objects: list[dict[str, str]] = []
    for line in output.splitlines():
        if line.startswith("[") and line.rstrip().endswith("]"):
            objects.append({})
            continue
        key, sep, value = line.partition("=")
        if sep and objects:
            objects[-1][key.strip()] = value.strip()
    try:
        sizes = [
            ModelSize(
                x=float(o["size_x"]),
                y=float(o["size_y"]),
                z=float(o["size_z"]),
                manifold=o.get("manifold") == "yes",
                open_edges=int(o.get("open_edges", "0")),
                objects=1,
            )
            for o in objects
            if int(o.get("number_of_facets", "1")) > 0
        ]
    except (KeyError, ValueError) as exc:
        raise SlicerError(f"cannot read PrusaSlicer's --info output: {_tail(output)}") from exc
    if not sizes:
        raise UnsliceableModel(Unsliceable.EMPTY, f"{model.name} holds no geometry")
    return ModelSize(
        x=max(s.x for s in sizes),
        y=max(s.y for s in sizes),
        z=max(s.z for s in sizes),
        manifold=all(s.manifold for s in sizes),
        open_edges=sum(s.open_edges for s in sizes),
        objects=len(sizes),
    )


def _mm(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if "[trace]" not in line]
    return " | ".join(lines)[-_OUTPUT_TAIL:] or "no output"
