"""The slicer port on the PrusaSlicer command line (Debian ``prusa-slicer``, 2.5).

Runs headless: ``prusa-slicer --export-gcode`` needs no display (``DISPLAY`` is removed from
its environment so it never tries one), and ``--datadir`` points at a throwaway folder so it
neither reads nor writes the user's PrusaSlicer settings. A slice loads three profile files
(``profiles/printer/<name>.ini``, ``profiles/filament/<name>.ini``,
``profiles/print/<name>.ini``); options a 3MF carries itself apply only where the profiles
leave them unset.

Before slicing, ``prusa-slicer --info`` reports the model's size and whether its mesh is
closed, so an empty file, an open (non-manifold) mesh or a model larger than the printer get
a clear :class:`UnsliceableModel` instead of PrusaSlicer's own terse or crashing answer
(2.5 aborts with SIGABRT when objects do not fit the bed). PrusaSlicer's silent mesh
repair is not relied on: a mesh that needs it is refused, so what prints is what was
modelled. Both runs have a time limit; on expiry the process group is killed.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from kittylab.adapters.slicer.gcode_summary import SummaryMissing, read_summary
from kittylab.domain.errors import ValidationFailed
from kittylab.services.slicing import (
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
    ) -> None:
        self.binary = binary
        self.profile_dir = profile_dir
        self.timeout_seconds = timeout_seconds
        self.info_timeout_seconds = info_timeout_seconds

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
            # Absolute, so a file named like an option (-x.stl) is never read as one.
            run = self._run(["--info", str(model.resolve())], Path(work), self.info_timeout_seconds)
        if run.returncode != 0 or "size_x" not in run.output:
            raise self._refusal(run, model, model_format)
        return _parse_info(run.output, model)

    def slice(self, model: Path, output: Path, *, profile: SliceProfile) -> SliceResult:
        model_format = self._check_input(model)
        loads = [self._profile_file(kind, getattr(profile, kind)) for kind in PROFILE_KINDS]
        volume = self.build_volume(profile.printer)
        size = self.inspect(model)
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

        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SlicerError(f"cannot write G-code to {output.parent}: {exc.strerror}") from exc
        partial = output.with_name(f".{output.stem}-{secrets.token_hex(4)}.partial.gcode")
        try:
            with tempfile.TemporaryDirectory(prefix="kittylab-slicer-") as work:
                arguments = [f"--load={path}" for path in loads]
                arguments += ["--export-gcode", f"--output={partial}", str(model.resolve())]
                run = self._run(arguments, Path(work), self.timeout_seconds)
            if run.returncode != 0 or not partial.is_file():
                raise self._refusal(run, model, model_format)
            try:
                summary = read_summary(partial)
            except SummaryMissing as exc:
                raise SlicerError(f"PrusaSlicer's G-code for {model.name} has {exc}") from exc
            gcode_bytes = partial.stat().st_size
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
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

    def _run(self, arguments: list[str], work: Path, timeout: float) -> _Run:
        command = [self.binary, f"--datadir={work / 'datadir'}", "--loglevel=1", *arguments]
        env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY"}}
        try:
            # No shell; the binary is the operator's setting and the arguments are paths.
            process = subprocess.Popen(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=work,
                env=env,
                start_new_session=True,  # a timeout kills every process it started
            )
        except OSError as exc:
            raise SlicerError(
                f"cannot run PrusaSlicer ({self.binary}): {exc.strerror}; install it with "
                "scripts/install-system-deps.sh or set KITTYLAB_SLICER__BINARY"
            ) from exc
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SlicerTimeout(
                f"PrusaSlicer did not finish within {timeout:g} s and was stopped"
            ) from None
        return _Run(process.returncode, out.decode("utf-8", "replace"))

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
        if run.returncode < 0:
            return SlicerError(f"PrusaSlicer was killed by signal {-run.returncode}: {_tail(text)}")
        return SlicerError(f"PrusaSlicer failed (exit {run.returncode}): {_tail(text)}")


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
