"""``kittylab print`` and ``kittylab jobs``: print jobs from a terminal, through the
running server's API (``KITTYLAB_URL``, ``KITTYLAB_TOKEN``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from kittylab.cli import live
from kittylab.cli.client import ApiClient, ApiProblem
from kittylab.cli.options import UrlOption

console = Console()
ENDED = ("completed", "failed", "aborted")


def register(app: typer.Typer, friendly: Any) -> None:
    app.command("print")(friendly(print_file))
    app.command("jobs")(friendly(jobs))
    app.command("bed-clear")(friendly(bed_clear))


def print_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="G-code or model.")],
    on: Annotated[str, typer.Option("--on", help="The printer (external id or alias).")],
    profile: Annotated[str, typer.Option(help="Job profile (scene).")] = "default",
    url: UrlOption = None,
    follow: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = True,
    material: Annotated[
        str | None,
        typer.Option(help="The filament or resin (ABS, PA6-CF…); hazardous ones are flagged."),
    ] = None,
    ppe: Annotated[
        list[str] | None,
        typer.Option("--ppe", help="PPE you confirm wearing (a zone policy may ask for it)."),
    ] = None,
) -> None:
    """Upload a file and queue it on a printer; models are sliced first."""
    client = ApiClient(url)
    try:
        printers = client.get("/api/devices", name=on, kind="printer")["items"]
        if not printers:
            raise ApiProblem(404, f"no printer is called {on!r}", "--on")
        printer = printers[0]
        with console.status(f"uploading {file.name} ({file.stat().st_size:,} bytes)…"):
            uploaded = client.put_file(f"/api/fabrication/files/{file.name}", file)
        request: dict[str, Any] = {
            "deviceId": printer["id"],
            "fileKey": uploaded["fileKey"],
            "profile": profile,
        }
        if material:
            request["material"] = material
        if ppe:
            request["ppeConfirmed"] = ppe
        job = client.post("/api/fabrication/jobs", request)
        console.print(f"job {job['id']} queued on {printer['externalId']}{_hazmat(job)}")
        if follow:
            job = _follow(client, job["id"])
    finally:
        client.close()
    if follow and job["status"] != "completed":
        raise typer.Exit(1)


def _follow(client: ApiClient, job_id: str) -> dict[str, Any]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}")
    )
    task = progress.add_task("preparing", total=1.0, info="")
    try:
        with progress:
            while True:
                job: dict[str, Any] = client.get(f"/api/fabrication/jobs/{job_id}")
                details = job["details"]
                stage = details.get("stage") if job["status"] == "preparing" else job["status"]
                info = details.get("waiting_for") or details.get("reason") or ""
                progress.update(
                    task,
                    description=str(stage),
                    completed=float(details.get("progress") or 0.0),
                    info=info,
                )
                if job["status"] in ENDED:
                    return job
                time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopped following; the job goes on (see `kittylab jobs`)")
        raise typer.Exit(0) from None


def jobs(
    url: UrlOption = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many recent jobs.")] = 20,
) -> None:
    """Print jobs, newest first, with live progress bars."""
    client = ApiClient(url)
    try:
        live.show(console, lambda: _jobs_view(client, limit), watch=watch)
    finally:
        client.close()


def _jobs_view(client: ApiClient, limit: int) -> Group | Table:
    printers = {d["id"]: d["externalId"] for d in client.all_items("/api/devices", kind="printer")}
    items = client.get("/api/fabrication/jobs", limit=limit)["items"]
    if not items:
        table = Table("job", box=None)
        table.add_row("no print jobs yet")
        return table
    bars = Progress(
        TextColumn("{task.fields[printer]:<12}"),
        TextColumn("{task.fields[file]:<24}"),
        TextColumn("{task.fields[hazmat]:<8}"),  # hazardous material classes, if any
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[info]}"),
    )
    for job in sorted(items, key=lambda j: j["createdAt"], reverse=True):
        details = job["details"]
        status = details.get("stage") if job["status"] == "preparing" else job["status"]
        done = 1.0 if job["status"] == "completed" else float(details.get("progress") or 0.0)
        bars.add_task(
            str(status),
            total=1000,
            completed=round(done * 1000),
            printer=printers.get(job["deviceId"], "?"),
            file=str(details.get("source_name") or job["gcodePath"].rsplit("/", 1)[-1])[:24],
            info=details.get("waiting_for") or details.get("reason") or "",
            hazmat="/".join(job.get("hazardousMaterials") or []),
        )
    return Group(bars)


def _hazmat(job: dict[str, Any]) -> str:
    flagged = job.get("hazardousMaterials") or []
    return f" (hazardous material: {', '.join(flagged)})" if flagged else ""


def bed_clear(
    printer: Annotated[str, typer.Argument(help="The printer (external id or alias).")],
    url: UrlOption = None,
) -> None:
    """Confirm a printer's bed is empty, so its next queued job may start."""
    client = ApiClient(url)
    try:
        found = client.get("/api/devices", name=printer, kind="printer")["items"]
        if not found:
            raise ApiProblem(404, f"no printer is called {printer!r}", "printer")
        answer = client.post(f"/api/fabrication/printers/{found[0]['id']}/bed-clear", {})
    finally:
        client.close()
    console.print(
        f"bed of {found[0]['externalId']} confirmed clear "
        f"({answer['jobsCleared']} finished job(s)); its queue moves on"
    )
