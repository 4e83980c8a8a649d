"""The ``kittylab`` command line. Exit codes: 0 ok, 1 a domain or input error (message on
stderr), 2 usage, 3 infrastructure (database, data directory)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from kittylab import bootstrap
from kittylab.cli import approve as approve_cli
from kittylab.cli import console as console_cli
from kittylab.cli import devices as devices_cli
from kittylab.cli import keys as keys_cli
from kittylab.cli import locks as locks_cli
from kittylab.cli import mqtt as mqtt_cli
from kittylab.cli import presence as presence_cli
from kittylab.cli import printing as printing_cli
from kittylab.cli import stop as stop_cli
from kittylab.cli import tls as tls_cli
from kittylab.config import Settings
from kittylab.domain.errors import DomainError, InfrastructureError, KittyLabError, NotFound
from kittylab.domain.sanitize import sanitize_text
from kittylab.observability import configure_logging

app = typer.Typer(
    help="KittyLab: the control plane of a fabrication lab.",
    no_args_is_help=True,
    # A traceback's local variables can hold tokens and database passwords.
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
lab_app = typer.Typer(
    help="The lab manifest: zones, devices, people, policies.", no_args_is_help=True
)
users_app = typer.Typer(help="People and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(lab_app, name="lab")
app.add_typer(users_app, name="users")

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print KittyLab errors as one clear line instead of a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (DomainError, NotFound) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        except InfrastructureError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(3) from None
        except SQLAlchemyError as exc:
            # Typically an unreachable server or a schema older than this KittyLab.
            reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0]
            typer.secho(f"error: database: {sanitize_text(reason)}", fg="red", err=True)
            raise typer.Exit(3) from None
        except KittyLabError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _settings() -> Settings:
    """Settings from the environment; a bad value ends the command with one line per
    problem naming the variable (exit 2), not a traceback."""
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_json)
    except ValidationError as exc:
        for error in exc.errors():
            variable = "KITTYLAB_" + "__".join(str(p) for p in error["loc"]).upper()
            typer.secho(f"error: {variable}: {error['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # logging rejects an unknown level name
        typer.secho(f"error: KITTYLAB_LOG_LEVEL: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    return settings


@contextmanager
def _container(settings: Settings) -> Iterator[bootstrap.Container]:
    """A container for a one-shot command. It shares the data directory with a running
    server (no exclusive lock) and migrates first, so commands work on a fresh machine."""
    with bootstrap.database_url_for(settings, lock=False) as url:
        bootstrap.upgrade_database(url)
        with bootstrap.application(settings, url) as container:
            yield container


@app.command()
@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    workers: Annotated[bool, typer.Option(help="Also run background workers.")] = True,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Serve plain HTTP beyond loopback (behind a TLS proxy); "
            "env KITTYLAB_HTTP__ALLOW_PLAIN_HTTP.",
        ),
    ] = False,
) -> None:
    """Run the API (and background workers) until interrupted. Applies pending migrations;
    with no KITTYLAB_DATABASE_URL it starts the embedded PostgreSQL in the data dir.
    Bound beyond loopback it serves HTTPS (KITTYLAB_HTTP__TLS_CERT/_KEY, or the
    certificate of `kittylab tls init`) and refuses plain HTTP unless --insecure-http."""
    from kittylab.cli.serve import run_server

    settings = _settings()
    if insecure_http:
        http = settings.http.model_copy(update={"allow_plain_http": True})
        settings = settings.model_copy(update={"http": http})
    run_server(
        settings,
        host=host or settings.http.host,
        port=port or settings.http.port,
        with_workers=workers and settings.jobs.run_in_server,
    )


@app.command()
@friendly_errors
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
) -> None:
    """Run background workers only; start more of these on other machines to scale out."""
    from kittylab.cli.serve import run_worker_only

    settings = _settings()
    run_worker_only(settings, concurrency or settings.jobs.concurrency)


@app.command()
@friendly_errors
def simulate(
    command_key: Annotated[
        str | None,
        typer.Option(
            "--command-key",
            help="The public key commands are signed with, ed25519:BASE64 (default: the "
            "lab's command-signing.pub in the data dir; `kittylab mqtt command-key`).",
        ),
    ] = None,
    exit_with_stdin: Annotated[
        bool,
        typer.Option("--exit-with-stdin", hidden=True, help="Stop when stdin closes."),
    ] = False,
) -> None:
    """Run the demo lab's simulated devices as a process of their own, speaking MQTT only
    (as the simulator's bus identity), until interrupted. `kittylab serve` runs one for
    you; run it yourself with KITTYLAB_SIMULATOR__ENABLED=false on the server."""
    from kittylab.cli.simulate import run_simulator

    settings = _settings()
    run_simulator(settings, command_key=command_key, exit_with_stdin=exit_with_stdin)


@db_app.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply pending migrations."""
    settings = _settings()
    with bootstrap.database_url_for(settings, lock=False) as url:
        bootstrap.upgrade_database(url)
    typer.echo("database is at the newest migration")


@lab_app.command("apply")
@friendly_errors
def lab_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; store nothing.")
    ] = False,
) -> None:
    """Validate FILE and make the lab match it. Safe to repeat; devices missing from the
    file are retired (their history stays). Every change is audited. On the host this
    applies at once, even what weakens safety (listed first); through the API
    (POST /api/lab/apply) such a manifest waits for a second safety person."""
    from kittylab.manifest import review
    from kittylab.manifest.apply import apply_manifest
    from kittylab.manifest.loader import load_manifest

    text = file.read_text(encoding="utf-8")
    manifest = load_manifest(file)  # validate before touching the database
    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        found = review.review(session, manifest, text)
        report = apply_manifest(session, manifest, c.clock())
        if dry_run:
            session.rollback()
    if found.weakening:
        how = (
            "would be applied at once on this host"
            if dry_run
            else "applied at once: the on-host apply is the operator's path"
        )
        typer.echo(f"this manifest weakens safety ({how}; over the API it would wait for a")
        typer.echo("second person with the safety role):")
        for weakening in found.weakening:
            typer.echo(f"  - {weakening.change}")
    typer.echo(str(report))
    if dry_run:
        typer.echo("dry run: nothing was stored")


@lab_app.command("show")
@friendly_errors
def lab_show() -> None:
    """Print the lab as tables."""
    from kittylab.manifest.render import render_lab

    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        typer.echo(render_lab(session))


@users_app.command("token")
@friendly_errors
def users_token(
    username: Annotated[str, typer.Argument(help="The user's username, as in the manifest.")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    expires: Annotated[
        str | None,
        typer.Option(
            help="Lifetime, e.g. 90m, 12h, 30d or 2w (60 s to ten years). "
            "Without it the token never expires."
        ),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="Make it a machine token for a detector or an integration, reaching only "
            "this scope's endpoints: monitor or telemetry; repeatable."
        ),
    ] = None,
) -> None:
    """Print a new API token for USERNAME. It is shown once; only its hash is stored.
    The lab's default lifetime does not apply here: this is the on-host way in (the only
    way to a token for someone else: over the API, people mint only their own). Audited."""
    from kittylab.domain.identity import parse_token_lifetime
    from kittylab.domain.machine_scopes import parse_scopes
    from kittylab.people import identity

    lifetime = parse_token_lifetime(expires, "--expires") if expires is not None else None
    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        issued = identity.issue_token(
            session,
            identity.find_user_by_username(session, username),
            label,
            lifetime=lifetime,
            now=c.clock(),
            scopes=parse_scopes(scope or (), "--scope"),
        )
    typer.echo(issued.token)
    if issued.expires_at is not None:
        typer.secho(f"expires {_moment(issued.expires_at)}", err=True)


@users_app.command("tokens")
@friendly_errors
def users_tokens(
    username: Annotated[str, typer.Argument(help="The user's username, as in the manifest.")],
) -> None:
    """List USERNAME's API tokens (never the tokens themselves): id, label, when made,
    last used and when they expire, and whether they still work."""
    from sqlalchemy import select

    from kittylab.adapters.db.tables import ApiToken
    from kittylab.people import identity

    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        user = identity.find_user_by_username(session, username)
        now = c.clock()
        tokens = session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
        ).all()
        typer.echo(f"{'id':<36}  {'label':<16} {'created':<16} {'last used':<16} expires")
        for t in tokens:
            if t.revoked_at is not None:
                state = "  (revoked)"
            elif t.expires_at is not None and now >= t.expires_at:
                state = "  (expired)"
            else:
                state = ""
            expiry = _moment(t.expires_at) if t.expires_at else "never"
            typer.echo(
                f"{t.id!s:<36}  {t.label[:16]:<16} {_moment(t.created_at):<16} "
                f"{_moment(t.last_used_at):<16} {expiry}{state}"
            )


def _moment(when: datetime | None) -> str:
    """A time for a table, in UTC to the minute; "-" for none."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if when else "-"


@users_app.command("list")
@friendly_errors
def users_list() -> None:
    """Print the people KittyLab knows, with their roles."""
    from sqlalchemy import select

    from kittylab.adapters.db.tables import User

    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        users = session.scalars(select(User).order_by(User.username)).all()
        width = max((len(u.username) for u in users), default=8)
        for user in users:
            roles = ", ".join(r.value for r in user.roles)
            state = "" if user.active else "  (inactive)"
            source = "manifest" if user.managed_by_manifest else "api/cli"
            typer.echo(f"{user.username:<{width}}  {roles:<28} {source:<8}{state}")


@users_app.command("add")
@friendly_errors
def users_add(
    username: str,
    display_name: Annotated[str, typer.Option("--name", help="Display name.")],
    role: Annotated[
        list[str], typer.Option(help="operator, engineer, safety or admin; repeatable.")
    ],
    email: Annotated[str | None, typer.Option(help="Optional email.")] = None,
) -> None:
    """Add a person (the manifest is the usual way; this is for quick additions)."""
    from kittylab.people import identity

    settings = _settings()
    with _container(settings) as c, c.database.unit_of_work() as session:
        user = identity.create_user(
            session, username=username, display_name=display_name, roles=role, email=email
        )
        typer.echo(f"added {user.username} ({', '.join(r.value for r in user.roles)})")


devices_cli.register(app, friendly_errors)
printing_cli.register(app, friendly_errors)
locks_cli.register(app, friendly_errors)
approve_cli.register(app, friendly_errors)
keys_cli.register(app, friendly_errors)
presence_cli.register(app, friendly_errors)
stop_cli.register(app, friendly_errors)
mqtt_cli.register(app, friendly_errors)
tls_cli.register(app, friendly_errors)
console_cli.register(users_app, friendly_errors)  # issue 17: users invite


def _understanding(
    lab: Path | None, use_model: bool, use_semantic: bool = True
) -> Iterator[tuple[Settings, Any, Any]]:
    """Settings, an Understander and the lab vocabulary, from ``lab`` or the database."""
    from kittylab.adapters.llm.factory import local_model, semantic_stage
    from kittylab.conversation.lab import vocabulary_from_database, vocabulary_from_manifest
    from kittylab.conversation.understanding.pipeline import Understander
    from kittylab.manifest.loader import load_manifest

    settings = _settings()
    model = local_model(settings) if use_model else None
    semantic = semantic_stage(settings) if use_semantic else None
    understander = Understander(model, settings.query.grammar_threshold, semantic)
    if lab is not None:
        vocabulary = vocabulary_from_manifest(load_manifest(lab))
    else:
        with _container(settings) as c, c.database.unit_of_work() as session:
            vocabulary = vocabulary_from_database(session)
    # A one-shot command waits for the model instead of answering without it while it loads.
    warm_up = getattr(model, "warm_up", None)
    if callable(warm_up):
        try:
            warm_up(vocabulary)
        except KittyLabError as exc:
            typer.secho(f"warning: local model unavailable: {exc}", fg="yellow", err=True)
    yield settings, understander, vocabulary


LabOption = Annotated[
    Path | None,
    typer.Option(
        "--lab", exists=True, dir_okay=False, help="A lab manifest (default: the database)."
    ),
]
ModelOption = Annotated[
    bool, typer.Option("--model/--no-model", help="Ask the local model when the grammar is unsure.")
]
SemanticOption = Annotated[
    bool,
    typer.Option(
        "--semantic/--no-semantic", help="Run the semantic stage when the grammar is unsure."
    ),
]


@app.command()
@friendly_errors
def parse(
    lab: LabOption = None, model: ModelOption = True, semantic: SemanticOption = True
) -> None:
    """Read one utterance per line on stdin; write one JSON object per line on stdout
    (text, intent, device, args, tier, confidence, hazardous). Executes nothing."""
    from kittylab.cli.parse import parse_lines

    for settings, understander, vocabulary in _understanding(lab, model, semantic):
        for line in parse_lines(understander, vocabulary, settings.query, sys.stdin):
            typer.echo(line)


@app.command()
@friendly_errors
def evaluate(
    corpus: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL corpus.")],
    lab: LabOption = None,
    model: ModelOption = True,
    semantic: SemanticOption = True,
) -> None:
    """Run a labelled corpus (JSON lines: text, intent, device) through understanding and
    routing; print accuracy per intent, a confusion matrix and the share served locally."""
    import json

    from kittylab.cli.parse import evaluate as run_evaluation

    entries = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    for settings, understander, vocabulary in _understanding(lab, model, semantic):
        report = run_evaluation(
            understander, vocabulary, settings.query, entries,
            use_model=model, use_semantic=semantic,
        )  # fmt: skip
        typer.echo(report.render())


@app.command()
@friendly_errors
def shell(
    url: Annotated[
        str | None, typer.Option(help="KittyLab's base URL (default: the configured host/port).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="KITTYLAB_TOKEN", help="API token (or KITTYLAB_TOKEN).")
    ] = None,
    channel: Annotated[str, typer.Option(help="mac, ipad, wall_terminal, remote or cli.")] = "cli",
    continue_id: Annotated[
        str | None,
        typer.Option(
            "--continue",
            help="Show this conversation's history and carry on in it (any participant's).",
        ),
    ] = None,
) -> None:
    """Talk to the running service: history (up arrow), Tab completes device names,
    approvals that an action waits for are shown plainly, and a command's outcome that
    comes after its reply is printed when it arrives. /new starts a new conversation,
    /quit ends."""
    import httpx

    from kittylab.cli.client import server_trust
    from kittylab.cli.shell import ShellError, ShellSession

    settings = _settings()
    if not token:
        typer.secho("error: give --token or set KITTYLAB_TOKEN", fg="red", err=True)
        raise typer.Exit(2)
    base = url or f"http://{settings.http.host}:{settings.http.port}"
    headers = {"Authorization": f"Bearer {token}"}
    resume: UUID | None = None
    if continue_id is not None:
        try:
            resume = UUID(continue_id)
        except ValueError:
            typer.secho("error: --continue takes a conversation id", fg="red", err=True)
            raise typer.Exit(2) from None
    trust = server_trust()
    # The event stream has its own client: it stays open on a thread of its own, and only
    # its connection may wait without a read timeout.
    with (
        httpx.Client(base_url=base, headers=headers, timeout=120, verify=trust) as client,
        httpx.Client(
            base_url=base,
            headers=headers,
            timeout=httpx.Timeout(10, read=None),
            verify=trust,
        ) as events,
    ):
        session = ShellSession(client, channel, events=events, show=_show_event)
        _readline_setup(session, settings.data_dir / "shell_history")
        typer.echo(f"KittyLab at {base}. Ctrl-D or /quit to leave, /new for a new conversation.")
        if resume is not None:
            try:
                typer.echo(session.resume(resume))
            except ShellError as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)
                raise typer.Exit(1) from None
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                typer.echo("")
                break
            if line in ("/quit", "/exit"):
                break
            if line == "/new":
                session.conversation_id = None
                typer.echo("(new conversation)")
                continue
            if not line:
                continue
            try:
                typer.echo(session.send(line))
            except ShellError as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)


def _show_event(text: str) -> None:
    """A message pushed while the person may be typing: on a line of its own."""
    typer.echo(f"\n{text}")


def _readline_setup(session: Any, history: Path) -> None:
    try:
        import readline
    except ImportError:  # not on every platform; the shell works without it
        return
    history.parent.mkdir(parents=True, exist_ok=True)
    import atexit
    import contextlib

    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(history)
    atexit.register(readline.write_history_file, history)
    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        if state == 0:
            line = readline.get_line_buffer()
            start = len(line) - len(text)
            matches[:] = [m[start:] for m in session.complete(line)]
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims("")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")


from kittylab.cli.cad import cad_app  # noqa: E402 - its commands import this module lazily

app.add_typer(cad_app, name="cad")
from kittylab.cli.audit import audit_app  # noqa: E402 - same reason as cad's

app.add_typer(audit_app, name="audit")


def main() -> None:
    """Console entry point."""
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback
    # is what the embedded PostgreSQL wants anyway.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    app()
    sys.exit(0)
