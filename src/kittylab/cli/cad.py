"""``kittylab cad``: generate parts from the command line."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from kittylab.adapters.db.tables import CADArtifact, CADJob
from kittylab.bootstrap import Container
from kittylab.cad import job_details
from kittylab.cad.errors import CadBudgetExceeded
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import GenerateRequest
from kittylab.config import Settings
from kittylab.domain.enums import CADJobStatus

cad_app = typer.Typer(help="CAD generation: text to STEP/STL.", no_args_is_help=True)

# The options ``generate`` and ``iterate`` share.
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Build here with the offline providers only.")
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Write the artifacts into this folder.")
]
WaitOption = Annotated[float, typer.Option(help="Seconds to wait for a queued (online/auto) job.")]

_EXTENSIONS = {"step": "step", "stl": "stl", "obj": "obj", "dxf": "dxf", "preview": "png"}


@cad_app.command("generate")
def generate(
    prompt: Annotated[
        str, typer.Argument(help='e.g. "a 60 by 60 plate, 4 mm thick, four M4 holes"')
    ],
    offline: OfflineOption = False,
    out: OutOption = None,
    wait: WaitOption = 600.0,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Run every available provider and keep each one's artifacts."
        ),
    ] = False,
) -> None:
    """Generate a part; print its artifacts with scores and bounding boxes."""
    from kittylab.cli.main import _container, _settings, friendly_errors

    friendly_errors(_generate)(_settings(), _container, prompt, offline, out, wait, compare)


@cad_app.command("iterate")
def iterate(
    job_id: Annotated[UUID, typer.Argument(help="The job to start from.")],
    follow_up: Annotated[
        str, typer.Argument(help='e.g. "make it 5 mm taller", or a reading the job offered')
    ],
    offline: OfflineOption = False,
    out: OutOption = None,
    wait: WaitOption = 600.0,
) -> None:
    """A new part from a job's specification changed by a follow-up, linked to that job."""
    from kittylab.cli.main import _container, _settings, friendly_errors

    friendly_errors(_generate)(
        _settings(), _container, follow_up, offline, out, wait, parent_job_id=job_id
    )


def _generate(
    settings: Settings,
    container_for: Callable[[Settings], AbstractContextManager[Container]],
    prompt: str,
    offline: bool,
    out: Path | None,
    wait: float,
    compare: bool = False,
    parent_job_id: UUID | None = None,
) -> None:
    """Generate ``prompt``, or with ``parent_job_id`` iterate that job by the follow-up
    ``prompt``; wait for the job, then print its readings and artifacts."""
    console = Console(stderr=True)
    mode = PolicyMode.OFFLINE if offline else PolicyMode.AUTO
    with container_for(settings) as c:
        started = time.perf_counter()
        with console.status(f"generating ({mode.value}) …"):
            try:
                if parent_job_id is not None:
                    result = c.cad.iterate(parent_job_id, prompt, requested_by=None, mode=mode)
                else:
                    result = c.cad.generate(
                        GenerateRequest(
                            prompt=prompt, policy_mode=mode, requested_by=None, compare=compare
                        )
                    )
            except CadBudgetExceeded as exc:
                offer = (
                    "; run it again with --offline to build it here at no cost"
                    if exc.offline_offer
                    else "; the offline part library cannot build this prompt"
                )
                typer.secho(f"error: online CAD refused: {exc.reason}{offer}", fg="red", err=True)
                raise typer.Exit(1) from None
            job_id = result.job.id
            status = result.job.status
            deadline = time.monotonic() + wait
            while status in (CADJobStatus.QUEUED, CADJobStatus.RUNNING):
                if time.monotonic() > deadline:
                    console.print(f"job {job_id} is still {status.value}; check it later")
                    raise typer.Exit(3)
                time.sleep(0.5)
                status = _status(c, job_id)
                console.log(f"job {job_id}: {status.value}")
        job, artifacts = _load(c, job_id)
        if job.status is CADJobStatus.FAILED:
            console.print(f"[red]job {job_id} failed: {job.error}[/red]")
            raise typer.Exit(3)
        console.print(
            f"job {job_id} {job.status.value} in {time.perf_counter() - started:.1f} s "
            f"(provider: {job_details.read(job).provider})"
        )
        spec = job_details.read(job).spec
        if spec and spec.get("defaults"):
            console.print(
                "defaults used: "
                + ", ".join(f"{name}={spec['params'][name]:g}" for name in spec["defaults"])
            )
        for reading in spec.get("readings", []) if spec else []:
            _print_reading(console, job_id, reading, offline)
        table = Table(title=f"CAD job {job_id}")
        for column in ("type", "provider", "score", "bounding box (mm)", "file"):
            table.add_column(column)
        for artifact in artifacts:
            box = artifact.metadata_.get("bounding_box", {})
            where = artifact.artifact_key
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                ext = _EXTENSIONS[artifact.artifact_type.value]
                name = "preview" if ext == "png" else "part"
                target = out / f"{artifact.provider.value}-{name}.{ext}"
                c.artifacts.download_to(artifact.artifact_key, target)
                where = str(target)
            table.add_row(
                artifact.artifact_type.value,
                artifact.provider.value,
                f"{artifact.quality_score:.2f}" if artifact.quality_score is not None else "-",
                f"{box.get('x', 0):g} x {box.get('y', 0):g} x {box.get('z', 0):g}",
                where,
            )
        Console().print(table)


def _print_reading(console: Console, job_id: UUID, reading: dict[str, Any], offline: bool) -> None:
    """Which way an ambiguous phrase was read, and the command that builds the other."""
    console.print(
        f"read '{reading['phrase']}' as {reading['taken']}; it could also mean {reading['other']}",
        markup=False,
        soft_wrap=True,  # one line: the command is copied as it is
    )
    if reading.get("followUp"):
        flag = " --offline" if offline else ""
        console.print(
            f'  for that reading: kittylab cad iterate {job_id} "{reading["followUp"]}"{flag}',
            markup=False,
            soft_wrap=True,  # one line: the command is copied as it is
        )


@cad_app.command("providers")
def providers() -> None:
    """List the CAD providers, whether each works offline, and why one is unavailable."""
    from kittylab.cli.main import _container, _settings, friendly_errors

    def show() -> None:
        with _container(_settings()) as c:
            table = Table(title="CAD providers")
            for column in ("provider", "offline", "available", "reason"):
                table.add_column(column)
            for status in c.cad.provider_status():
                table.add_row(
                    status.provider,
                    "yes" if status.offline else "no",
                    "yes" if status.available else "no",
                    status.reason or "",
                )
            Console().print(table)

    friendly_errors(show)()


def _status(c: Container, job_id: UUID) -> CADJobStatus:
    with c.database.unit_of_work() as session:
        job = session.get(CADJob, job_id)
        assert job is not None
        return job.status


def _load(c: Container, job_id: UUID) -> tuple[CADJob, list[CADArtifact]]:
    with c.database.unit_of_work() as session:
        job, artifacts = c.cad.job_with_artifacts(session, job_id)
        session.expunge_all()
    return job, artifacts
