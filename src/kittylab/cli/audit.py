"""``kittylab audit``: verify and read the hash-chained audit log, directly from the
database (like ``kittylab users list``), so it works with the server stopped and does not
depend on the API it audits."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from kittylab.records import audit
from kittylab.safety.audit_chain import ChainReport

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify its hash chain, read it.", no_args_is_help=True
)

_ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")
_DETAILS_WIDTH = 60

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")]


def parse_anchors(values: list[str]) -> dict[int, str]:
    """``SEQ:HASH`` strings (as an earlier ``verify`` printed them) → {seq: hash}."""
    anchors: dict[int, str] = {}
    for value in values:
        match = _ANCHOR.match(value.strip().lower())
        if match is None:
            raise typer.BadParameter(
                f"{value!r} is not SEQ:HASH (a number, a colon, 64 hex digits)",
                param_hint="--anchor",
            )
        anchors[int(match.group(1))] = match.group(2)
    return anchors


def report_json(report: ChainReport) -> dict[str, Any]:
    return {
        "intact": report.intact,
        "entries": report.entries,
        "head": report.head,
        "headSeq": report.head_seq,
        "breaks": [{"seq": b.seq, "kind": b.kind.value, "problem": str(b)} for b in report.breaks],
    }


@audit_app.command("verify")
def verify_command(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="SEQ:HASH of an entry recorded earlier (from an earlier verify's head); "
            "reveals truncation and rewrites. Repeatable."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Walk the whole chain, oldest first. Exit 0 when intact (printing the head hash to
    record elsewhere), 1 with every break listed when not."""
    from kittylab.cli.main import _container, _settings, friendly_errors

    anchors = parse_anchors(anchor or [])

    @friendly_errors
    def run() -> ChainReport:
        settings = _settings()
        with _container(settings) as c, c.database.unit_of_work() as session:
            return audit.verify_chain(session, anchors)

    report = run()
    if as_json:
        typer.echo(json.dumps(report_json(report)))
    elif report.intact:
        typer.echo(f"audit chain intact: {report.entries} entries, head {report.head}")
    else:
        for chain_break in report.breaks:
            typer.echo(str(chain_break))
        problems = len(report.breaks)
        typer.secho(
            f"audit chain BROKEN: {problems} problem{'s' if problems != 1 else ''} in "
            f"{report.entries} entries, head {report.head}",
            fg="red",
            err=True,
        )
    if not report.intact:
        raise typer.Exit(1)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(details: dict[str, Any]) -> str:
    text = json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _DETAILS_WIDTH else text[: _DETAILS_WIDTH - 1] + "…"


def _row_json(row: audit.AuditRow) -> dict[str, Any]:
    e = row.entry
    return {
        "seq": e.seq,
        "occurredAt": e.occurred_at.astimezone(UTC).isoformat(),
        "actorId": str(e.actor_id) if e.actor_id else None,
        "actorUsername": row.actor_username,
        "action": e.action,
        "subjectType": e.subject_type,
        "subjectId": e.subject_id,
        "details": e.details,
        "entryHash": e.entry_hash,
    }


def render_table(rows: list[audit.AuditRow]) -> str:
    """Oldest first, plain columns: seq, time (UTC), actor, action, subject, details."""
    if not rows:
        return "no audit entries match"
    table = [("seq", "time (UTC)", "actor", "action", "subject", "details")]
    for row in rows:
        e = row.entry
        # No actor: the system, or a local operator at the command line.
        actor = row.actor_username or (str(e.actor_id)[:8] if e.actor_id else "-")
        subject = f"{e.subject_type}:{e.subject_id}" if e.subject_id else (e.subject_type or "-")
        table.append(
            (str(e.seq), _time(e.occurred_at), actor, e.action, subject, _short(e.details))
        )
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in table
    )


@audit_app.command("list")
def list_command(
    action: Annotated[
        str | None, typer.Option(help="Only this action (lock.placed), or a prefix: 'safety.*'.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only entries about this subject id.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only acts by this username.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="The newest N entries.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest entries that match, printed oldest first."""
    from kittylab.cli.main import _container, _settings, friendly_errors
    from kittylab.people import identity

    @friendly_errors
    def run() -> None:
        settings = _settings()
        with _container(settings) as c, c.database.unit_of_work() as session:
            actor_id = identity.find_user_by_username(session, actor).id if actor else None
            where = audit.AuditFilter(action=action, actor_id=actor_id, subject_id=subject)
            rows = list(reversed(audit.search(session, where, limit=limit)))
            if as_json:
                typer.echo(json.dumps([_row_json(r) for r in rows], ensure_ascii=False))
            else:
                typer.echo(render_table(rows))

    run()
