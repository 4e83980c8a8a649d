#!/usr/bin/env python3
"""Move KittyLab from a flat ``services/`` to capability packages (issue 12), rewriting every
reference to a moved module.

    python scripts/dev/move_packages.py check      # the plan; exit 2 when something is unmapped
    python scripts/dev/move_packages.py apply      # every step, uncommitted
    python scripts/dev/move_packages.py apply --commit --verify   # one green commit a step
    python scripts/dev/move_packages.py apply --step devices      # one step only

What ``apply`` does, step by step (``STEPS``, in order; each step is one commit with
``--commit``):

1. ``git mv`` every module of the step (``MOVE_TABLE``) to its package, and
   cuts the top-level definitions listed in ``SYMBOL_MOVES`` out of a module that is split
   between packages (``services/ports.py``) into their new module.
2. Rewrites every Python import of a moved module or symbol (``from kittylab.services import
   dispatch`` → ``from kittylab.devices import dispatch``; ``from kittylab.services.drivers
   import DeviceTarget`` → ``from kittylab.devices.ports import DeviceTarget``), anywhere in a
   file (function bodies, ``TYPE_CHECKING`` blocks). A module whose name changes is bound
   under its new name and the file's uses follow (``print_monitor.report(…)`` →
   ``reports.report(…)``) when that is unambiguous; otherwise it is imported ``as`` its old
   name, and the file is listed.
3. Rewrites every dotted module string and path in every tracked text file: code strings
   (``mock.patch``, ``caplog`` logger names, ``python -m``), docstrings, comments, Markdown,
   ``pyproject.toml``; short forms (``services/drivers.py``, ``services.audit``) and, inside
   backticks, ``old_module.name`` when ``name`` is defined in that module.
4. Writes each package's ``__init__.py``: a docstring naming its modules and their public
   surface (``PACKAGES``, ``SURFACE``); no imports, so importing a port never loads a use case
   and packages add no import cycles.
5. Sorts imports and formats the touched files (``ruff check --select I,F401 --fix``,
   ``ruff format``); removes ``services/__init__.py`` once the folder is empty.
6. With ``--verify``: ruff, ``ruff format --check``, ``mypy src``, the unit tests and a fresh
   interpreter importing each moved module first (catches import cycles); with
   ``--commit``: commits the step (only the paths it touched) once verified.

Re-runnable: a move already done (source gone, target present) is skipped, and rewriting is
idempotent, so a step can be run again after fixing what made it fail. Every module found
under ``src/kittylab/services/`` must have a line in ``MOVE_TABLE`` and every top-level name of a
split module a line in ``SYMBOL_MOVES`` or ``SYMBOLS_STAYING``; otherwise the script prints
them and refuses to run (exit 2) — add the line and run it again.

Background jobs are unaffected: procrastinate task names are pinned
(``worker/tasks.py``: ``@blueprint.task(name="dispatch_command")`` under the
``kittylab`` namespace), not derived from module paths, so jobs queued before the upgrade
still run. The script checks that this is still so (``check_task_names``).
"""

# ruff: noqa: S603, S607 - runs git, ruff, mypy and pytest from the repository's venv

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --- the map -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One module to a new dotted name. ``local``: the name a ``from package import module``
    binds it to in importers (default: its new base name)."""

    old: str
    new: str
    step: str
    local: str | None = None

    @property
    def bound_name(self) -> str:
        return self.local or self.new.rsplit(".", 1)[1]


@dataclass(frozen=True)
class PackageMove(Move):
    """A whole package, every module in it (present or future), to a new dotted name."""


@dataclass(frozen=True)
class SymbolMove:
    """Top-level definitions of ``module`` (its original name) that go to ``new``: cut by
    the script in the step that moves ``new``'s package, or ``by_hand``."""

    module: str
    names: tuple[str, ...]
    new: str
    by_hand: bool = False

    @property
    def step(self) -> str:
        return self.new.split(".")[1]


MOVE_TABLE = """
# from (under kittylab.)      to (under kittylab.)            step          bound as
services.ports                ports                           shared
services.queue_metrics        adapters.jobs.metrics           shared
services.audit                records.audit                   records
services.notifications        records.notifications           records
services.alerts               records.alerts                  records
services.artifacts            records.ports                   records       artifacts
services.identity             people.identity                 people
services.presence             people.presence                 people
services.safety               safety.workflow                 safety
services.locks                safety.locks                    safety
services.keys                 safety.keys                     safety
services.commands             devices.commands                devices
services.dispatch             devices.dispatch                devices
services.drivers              devices.ports                   devices       drivers
services.device_poller        devices.poller                  devices
services.telemetry            devices.telemetry               devices
services.telemetry_ingest     devices.telemetry_ingest        devices
services.maintenance          devices.maintenance             devices
services.simulation           simulator.fleet                 simulator
adapters.devices.simulated    simulator.devices               simulator
services.fabrication          fabrication.jobs                fabrication   fabrication
services.fabrication_records  fabrication.records             fabrication   fabrication_records
services.print_tracker        fabrication.tracker             fabrication
services.slicing              fabrication.ports               fabrication   slicing
services.uploads              fabrication.uploads             fabrication
services.gcode_gate           fabrication.gcode_gate          fabrication
services.print_watch          monitoring.watcher              monitoring
services.print_monitor        monitoring.reports              monitoring
services.monitor_follow_ups   monitoring.follow_ups           monitoring
services.monitor_ingest       monitoring.ingest               monitoring
services.detection            monitoring.ports                monitoring    detection
services.cad                  cad.runs                        cad
services.cad_records          cad.records                     cad           cad_records
services.query                conversation.query              conversation
services.query_dispatch       conversation.actions            conversation
services.query_lab            conversation.lab                conversation
services.query_metrics        conversation.metrics            conversation
services.query_ports          conversation.ports              conversation
services.routing_log          conversation.routing_log        conversation
services.sessions             conversation.sessions           conversation
routing.*                     conversation.routing.*          conversation
understanding.*               conversation.understanding.*    conversation
"""
"""One line a module (``.*``: a whole package, its future modules included). "bound as": the
name ``from package import module`` binds it to in importers, when not its new base name
(``records as fabrication_records``: a bare ``records`` would read as the package).
``cad.runs`` is split by hand afterwards (``/work/plan-12/cad-split.patch``)."""


def _parse_moves(table: str) -> tuple[tuple[Move, ...], tuple[PackageMove, ...]]:
    moves: list[Move] = []
    packages: list[PackageMove] = []
    for line in table.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        old, new, step, *local = fields
        if old.endswith(".*"):
            packages.append(PackageMove(f"kittylab.{old[:-2]}", f"kittylab.{new[:-2]}", step))
        else:
            moves.append(Move(f"kittylab.{old}", f"kittylab.{new}", step, *local))
    return tuple(moves), tuple(packages)


MOVES, PACKAGE_MOVES = _parse_moves(MOVE_TABLE)

S = "kittylab.services."
SYMBOL_MOVES: tuple[SymbolMove, ...] = (
    SymbolMove(S + "ports", ("DeliveryFailed", "NotificationSender"), "kittylab.records.ports"),
)
"""Names the script cuts out of a module split between packages, in the step of ``new``."""

CAD = "kittylab.cad."
CAD_SPLIT = {
    "errors": "CadGenerationFailed CadBusy ProviderUnavailable",
    "ports": "ProviderRequest ProviderOutput CadProviderPort Quality TargetBed ArtifactAnalyzer "
    "BuildVolumes CadJobQueue AlertQueue image_references",
    "planning": "PolicyMode",
    "recovery": "MAX_RUNS QUEUED_GRACE StrandedJobs",
}
REDIRECTS: tuple[SymbolMove, ...] = tuple(
    SymbolMove(CAD + "runs", tuple(names.split()), CAD + module, by_hand=True)
    for module, names in CAD_SPLIT.items()
)
"""Names the CAD hand split moved out of ``cad.runs``: their importers are rewritten by every
step once ``new`` defines them and ``runs`` no longer does (a no-op before the split);
``cad-split`` runs them alone after ``/work/plan-12/cad-split.patch``."""

SYMBOLS_STAYING: dict[str, frozenset[str]] = {
    S + "ports": frozenset({"JobQueue", "MessageBus"}),
}
"""Top-level names a split module keeps where it moves; any other name is unmapped."""

SCANNED_FOLDERS = ("src/kittylab/services",)
"""Every module in these must be mapped."""

STEPS: dict[str, str] = {
    "shared": "the ports every capability shares (message bus, job queue) out of services/",
    "records": "records/: audit log, notifications, alerts, the artifact and sender ports",
    "people": "people/: identity and presence",
    "safety": "safety/: the workflow, locks and keys join the pure rules",
    "devices": "devices/: commands, dispatch, drivers port, poller, telemetry and ingest",
    "simulator": "simulator/: the demo lab as MQTT peers",
    "fabrication": "fabrication/: print jobs, records, tracker, slicer port",
    "monitoring": "monitoring/: the print watcher, reports, follow-ups, ingest, detector port",
    "cad": "cad/: CAD runs and records (split into modules by hand next)",
    "conversation": "conversation/: query, actions, routing, understanding, sessions",
    "cad-split": "cad/: importers of what the hand split moved out of runs.py",
}
"""Steps in the order they run; the text is the commit subject's tail."""

PACKAGES: dict[str, str] = {
    "kittylab.records": (
        "Records: the audit log, notifications and alerts, and the artifact store's port.\n\n"
        "What the lab keeps and tells: every decision's audit entry, every message to a person\n"
        "(durable, retried), and where files live."
    ),
    "kittylab.people": (
        "People: who someone is (users, API tokens) and where they are (presence in zones).\n\n"
        "No port of its own: presence sources push to the API (UniFi Access webhook)."
    ),
    "kittylab.safety": (
        "Safety: hazardous actions wait for signed approvals; locks; keys; the audit chain.\n\n"
        "Two layers. The rules are pure (no database, network or clock of their own) and\n"
        "unit-tested without a server: ``policy``, ``lockout``, ``signatures``,\n"
        "``approval_payload``, ``audit_chain``, ``webhook_signature``. The use cases read the\n"
        "facts, apply the rules' answers and leave a record: ``workflow``, ``locks``, ``keys``.\n"
        "Fail-closed: an error while evaluating a hazardous action refuses it."
    ),
    "kittylab.devices": (
        "Devices: commands from request to confirmation, the driver port, state and telemetry.\n\n"
        "A command is checked and recorded (``dispatch.submit``), claimed and sent once by its\n"
        "integration's driver (``dispatch.dispatch``), and confirmed by the device's own state.\n"
        "Adapters (``kittylab.adapters.devices``) implement ``ports``."
    ),
    "kittylab.simulator": (
        "The simulator: the demo lab's devices as MQTT peers, nothing more.\n\n"
        "It takes commands and publishes state on the same topics as a generic MQTT device, so\n"
        "commands to the demo lab travel the path commands to real equipment do."
    ),
    "kittylab.fabrication": (
        "Fabrication: print jobs from a file to a finished part.\n\n"
        "upload → create → prepare (slice) → queue → start → follow; the slicer is a port\n"
        "(``ports``), implemented by ``kittylab.adapters.slicer``."
    ),
    "kittylab.monitoring": (
        "Monitoring: watching prints and acting on what is seen.\n\n"
        "Telemetry rules and camera detectors (the rules are pure, in\n"
        "``kittylab.domain.print_telemetry_rules`` and ``kittylab.domain.print_monitoring``)\n"
        "become monitor events; a failure pauses the print and tells whoever started it."
    ),
    "kittylab.cad": (
        "CAD: prompt → part specification → providers → scored artifacts → records.\n\n"
        "Providers and the analyzer are ports (implemented in ``kittylab.adapters.cad``); no\n"
        "database transaction is held while a provider works."
    ),
    "kittylab.conversation": (
        "Conversation: a turn is understood, routed to the cheapest confident tier, acted on\n"
        "or answered, and leaves exactly one routing decision.\n\n"
        "Subpackages ``understanding`` (text → intent, pure) and ``routing`` (tier choice,\n"
        "prices, budgets, answer cache, pure)."
    ),
}
"""Each capability package and the opening of its ``__init__`` docstring."""

SURFACE_TABLE = """
records.audit            the hash-chained audit log: ``append``, ``search``, ``verify_chain``
records.notifications    durable notifications: ``enqueue``, ``deliver``, ``due_for_delivery``
records.alerts           ``notify_person`` on every channel the lab has configured
records.ports            ``ArtifactStore`` (``validate_key``), ``NotificationSender``
people.identity          users and API tokens: ``create_user``, ``issue_token``, ``authenticate``
people.presence          ``record_manual``, ``record_unifi``, ``record_override``, ``present_users``
safety.workflow          held hazardous commands: ``hold``, ``approve``, ``deny``, ``expire_due``
safety.locks             lockout/tagout on the record: ``place``, ``remove``, ``active_locks``
safety.keys              approver keys: ``add_key``, ``revoke_key``, ``verify_approval_signature``
safety.policy            (pure) ``evaluate`` → ``Allow`` | ``NeedsApproval`` | ``Deny``
safety.lockout           (pure) the lock rules: ``lock_refusal``, ``removal_refusal``
safety.signatures        (pure) approver keys and signatures: ``parse_public_key``, ``verify``
safety.approval_payload  (pure) ``ApprovalPayload``: the exact bytes an approver signs
safety.audit_chain       (pure) the audit log's hash chain: ``entry_hash``, ``verify``
safety.webhook_signature (pure) UniFi Access webhook signatures: ``verify``
devices.commands         command records: ``create_command``, ``advance_command``
devices.dispatch         ``submit``, ``dispatch`` (claimed before sent), ``unfinished``
devices.ports            the driver port: ``DeviceDriver``, ``DeviceTarget``, ``PrintFileUploader``
devices.poller           ``DevicePoller``: the single poller of devices that are asked
devices.telemetry        ``store_batch``, ``store_stream``, ``latest_state``
devices.telemetry_ingest ``TelemetryIngest``: telemetry from the bus, in batches
devices.maintenance      ``mark_silent_devices_offline``, ``purge_old_telemetry``
simulator.fleet          ``SimulatedFleet``, ``run_fleet``: the demo lab on the bus
simulator.devices        stateful simulators of every device kind: ``build_simulator``
fabrication.jobs         ``create_job``, ``prepare``, ``claim_next``, ``apply_printer_state``
fabrication.records      ``create_fabrication_job``, ``advance_fabrication_job``
fabrication.tracker      ``PrintTracker``: the single follower of active print jobs
fabrication.ports        the slicer port: ``Slicer``, ``SliceProfile``, ``SliceResult``
fabrication.uploads      uploaded print files: quotas (``room``, ``settle``), ``remove_unused``
fabrication.gcode_gate   every print file's G-code checked: ``check_file``, ``check_archive``
monitoring.watcher       ``PrintWatcher``: telemetry rules and the detector on every print
monitoring.reports       ``report``: a monitor event, and the pause and notices it leads to
monitoring.follow_ups    ``link``, ``alert_if_failed``: a pause that fails is alerted
monitoring.ingest        ``MonitorIngest``: detector events from ``kitty/monitor/<job>``
monitoring.ports         ``FailureDetector``, ``SnapshotSource`` and their errors
cad.runs                 ``CadService``: ``generate``, ``iterate``, ``run_job``; ``GenerateRequest``
cad.records              ``create_cad_job``, ``advance_cad_job``, ``add_cad_artifact``
cad.errors               ``CadGenerationFailed``, ``CadBusy``, ``ProviderUnavailable``
cad.ports                ``CadProviderPort``, ``ArtifactAnalyzer``, ``BuildVolumes``, queues
cad.planning             ``PolicyMode``, ``plan``, ``provider_status``, ``target_printer``
cad.recovery             ``recover_stranded``: jobs a lost run left behind
cad.lineage              ``lineage``, ``job_with_artifacts``: reads
conversation.query       ``QueryService.handle``: one turn
conversation.actions     a turn's effects: ``DispatchingSubmitter``, ``ConversationCad``
conversation.lab         reading the lab for a turn: vocabulary, hazards, today's spend
conversation.metrics     ``observe``: the ``kittylab_query_…`` metrics
conversation.ports       ``Answerer``, ``CommandSubmitter``, ``ContextPublisher``, ``CadStarter``
conversation.routing_log ``record_routing_decision``: the append-only routing log
conversation.sessions    ``remove_inactive_sessions``
"""
SURFACE: dict[str, str] = {
    f"kittylab.{line.split(maxsplit=1)[0]}": line.split(maxsplit=1)[1]
    for line in SURFACE_TABLE.strip().splitlines()
}
"""One line per module for its package's docstring; a module without one gets the first
sentence of its own docstring."""

PREFACE: dict[str, str] = {
    "kittylab.ports": (
        "The ports every capability shares: the message bus and the job queue. A capability's\n"
        "own ports are in its package's ``ports`` module."
    ),
    "kittylab.records.ports": (
        "Ports of the records: the artifact store (below) and the notification sender\n"
        "(``NotificationSender``, ``DeliveryFailed``)."
    ),
}
"""A paragraph put first in a moved module's docstring (once), where its old opening no
longer says what it holds."""

TASKS_MODULE = "src/kittylab/worker/tasks.py"
TEXT_SUFFIXES = {
    ".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".yaml", ".yml", ".sh", ".rst", ".json",
    ".html", ".js", ".css", ".in",
}  # fmt: skip
SELF = "scripts/dev/move_packages.py"


# --- the repository ----------------------------------------------------------------------


class Refused(Exception):
    """The script will not run as things stand; the message says why."""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def module_path(root: Path, dotted: str) -> Path | None:
    """The file of a dotted module (``.py`` or a package's ``__init__.py``), if present."""
    base = root / "src" / Path(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def file_for(root: Path, dotted: str) -> Path:
    """Where a (non-package) dotted module's file is or would be."""
    return (root / "src" / Path(*dotted.split("."))).with_suffix(".py")


def text_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored text files, this script excepted."""
    names = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    out = []
    for name in names:
        if not name or name == SELF:
            continue
        path = root / name
        if path.suffix in TEXT_SUFFIXES and path.is_file():
            out.append(path)
    return sorted(set(out))


def top_level_names(source: str) -> list[str]:
    """Names a module defines at top level (classes, functions, assignments)."""
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


# --- the plan ----------------------------------------------------------------------------


@dataclass
class Plan:
    root: Path
    steps: list[str]
    moves: list[Move] = field(default_factory=list)
    """Moves of the selected steps whose source exists (to do now)."""
    done: list[Move] = field(default_factory=list)
    """Moves already done (source gone, target present)."""
    package_moves: list[PackageMove] = field(default_factory=list)
    packages_done: list[PackageMove] = field(default_factory=list)
    symbol_moves: list[SymbolMove] = field(default_factory=list)
    symbols_done: list[SymbolMove] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def make_plan(root: Path, steps: Sequence[str]) -> Plan:
    plan = Plan(root, list(steps))
    mapped = {m.old for m in MOVES}
    targets: dict[str, str] = {}
    for move in MOVES:
        if move.step not in STEPS:
            plan.problems.append(f"{move.old}: unknown step {move.step!r}")
        if move.new in targets:
            plan.problems.append(f"{move.old} and {targets[move.new]} both move to {move.new}")
        targets[move.new] = move.old
    for folder in SCANNED_FOLDERS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.py")):
            relative = path.relative_to(root / "src").with_suffix("")
            dotted = ".".join(relative.parts)
            if path.name == "__init__.py":
                if path.parent != directory:
                    plan.problems.append(f"unmapped package {dotted[: -len('.__init__')]}")
                continue
            if dotted not in mapped:
                plan.problems.append(
                    f"unmapped module {dotted} ({path.relative_to(root)}): add a line to MOVE_TABLE"
                )
    for move in MOVES:
        source, target = module_path(root, move.old), module_path(root, move.new)
        if source and target:
            plan.problems.append(f"{move.old} and its target {move.new} both exist")
        elif source:
            if move.step in steps:
                plan.moves.append(move)
        elif target:
            plan.done.append(move)
    for pmove in PACKAGE_MOVES:
        source_dir = root / "src" / Path(*pmove.old.split("."))
        target_dir = root / "src" / Path(*pmove.new.split("."))
        if source_dir.is_dir() and any(source_dir.rglob("*.py")):
            if target_dir.exists():
                plan.problems.append(f"{pmove.old} and its target {pmove.new} both exist")
            elif pmove.step in steps:
                plan.package_moves.append(pmove)
        elif target_dir.is_dir():
            plan.packages_done.append(pmove)
    for smove in SYMBOL_MOVES:
        current = current_module(root, smove.module)
        source = module_path(root, current) if current else None
        defined = set(top_level_names(source.read_text())) if source else set()
        if defined & set(smove.names):
            if smove.step in steps:
                plan.symbol_moves.append(smove)
        else:
            plan.symbols_done.append(smove)
    for module, staying in SYMBOLS_STAYING.items():
        current = current_module(root, module)
        source = module_path(root, current) if current else None
        if source is None:
            continue
        moving = {n for s in SYMBOL_MOVES if s.module == module for n in s.names}
        for name in top_level_names(source.read_text()):
            if name not in staying and name not in moving and not name.startswith("_"):
                plan.problems.append(
                    f"unmapped name {name} in {source.relative_to(root)} (split module): "
                    "add it to SYMBOL_MOVES or SYMBOLS_STAYING"
                )
    plan.problems += check_task_names(root)
    return plan


def current_module(root: Path, original: str) -> str | None:
    """Where an original module is now: its own name, or its move's target."""
    if module_path(root, original):
        return original
    for move in MOVES:
        if move.old == original and module_path(root, move.new):
            return move.new
    return None


def check_task_names(root: Path) -> list[str]:
    """Procrastinate stores a queued job's task name in PostgreSQL. They must stay pinned
    (``name=...`` on every task), never derived from the module path that is moving."""
    path = root / TASKS_MODULE
    if not path.is_file():
        return []
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "task"
                and not any(k.arg == "name" for k in decorator.keywords)
            ):
                problems.append(
                    f"{TASKS_MODULE}:{node.lineno}: task {node.name} has no pinned name= "
                    "(its stored name would follow the module path): pin it first"
                )
    return problems


# --- resolving old names -----------------------------------------------------------------


@dataclass
class Resolver:
    """Old dotted names → new ones, for the moves done (now or before)."""

    modules: dict[str, Move]
    packages: dict[str, PackageMove]
    symbols: dict[tuple[str, str], str]
    """(module, as it was or is now; name) → the module the name lives in now."""

    @classmethod
    def of(cls, plan: Plan) -> Resolver:
        moves = plan.moves + plan.done
        packages = plan.package_moves + plan.packages_done
        symbols: dict[tuple[str, str], str] = {}
        by_old = {m.old: m for m in MOVES}
        for smove in plan.symbol_moves + plan.symbols_done:
            homes = {smove.module}
            if smove.module in by_old:
                homes.add(by_old[smove.module].new)
            for home in homes:
                for name in smove.names:
                    symbols[(home, name)] = smove.new
        return cls({m.old: m for m in moves}, {p.old: p for p in packages}, symbols)

    def module(self, dotted: str) -> str | None:
        """The new name of a module or package (or of a dotted path inside a moved one),
        None when it does not move."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            rest = parts[i:]
            if prefix in self.modules:
                return ".".join([self.modules[prefix].new, *rest])
            if prefix in self.packages:
                return ".".join([self.packages[prefix].new, *rest])
        return None

    def is_module(self, dotted: str) -> bool:
        """Whether ``dotted`` names a moved module or package (not something inside one)."""
        if dotted in self.modules or dotted in self.packages:
            return True
        return any(dotted.startswith(p + ".") for p in self.packages) and self._exists(dotted)

    _root: Path | None = None

    def _exists(self, dotted: str) -> bool:
        return self._root is not None and (
            module_path(self._root, self.module(dotted) or dotted) is not None
        )

    def symbol(self, module: str, name: str) -> str | None:
        """The module a name imported from ``module`` lives in now, if it moved."""
        new_module = self.module(module) or module
        for key in ((module, name), (new_module, name)):
            if key in self.symbols:
                return self.symbols[key]
        return new_module if new_module != module else None

    def dotted(self, text: str) -> str:
        """A dotted reference (``kittylab.services.ports.DeliveryFailed``) rewritten."""
        parts = text.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            new = self.module(prefix)
            if new is None:
                continue
            rest = parts[i:]
            if rest:
                moved = self.symbols.get((prefix, rest[0])) or self.symbols.get((new, rest[0]))
                if moved:
                    return ".".join([moved, *rest])
            return ".".join([new, *rest])
        if len(parts) >= 2:
            moved = self.symbols.get((".".join(parts[:-1]), parts[-1]))
            if moved:
                return f"{moved}.{parts[-1]}"
        return text


# --- rewriting Python imports ------------------------------------------------------------


@dataclass
class FileReport:
    aliased: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)


def _bindings(tree: ast.Module, skip: set[int]) -> dict[str, int]:
    """Every name bound in a module (anywhere) with a count, except by the import nodes in
    ``skip`` (by id)."""
    bound: dict[str, int] = {}

    def add(name: str) -> None:
        bound[name] = bound.get(name, 0) + 1

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            if id(node) in skip:
                continue
            for alias in node.names:
                add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            add(node.id)
        elif isinstance(node, ast.arg):
            add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                add(name)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            add(node.rest)
    return bound


def _loads(tree: ast.Module) -> dict[str, list[ast.Name]]:
    uses: dict[str, list[ast.Name]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            uses.setdefault(node.id, []).append(node)
    return uses


def _col(line: str, byte_offset: int) -> int:
    """ast's UTF-8 byte column → a str index."""
    return len(line.encode()[:byte_offset].decode())


def rewrite_python(path: Path, source: str, resolver: Resolver) -> tuple[str, FileReport]:
    """Rewrite the imports of moved modules and symbols in one file, and the uses of a
    module whose bound name changes."""
    report = FileReport()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, report
    lines = source.splitlines(keepends=True)
    imports: list[tuple[ast.stmt, list[tuple[str, str | None, str | None]]]] = []
    """(node, [(from-module or "" for ``import``, name, asname)]) after rewriting."""
    renames: dict[str, str] = {}
    wanted: list[tuple[ast.ImportFrom, str, str, str]] = []
    """(node, old bound name, new bound name, new base name) for module imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            new_names: list[tuple[str, str | None, str | None]] = []
            changed = False
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if resolver.is_module(full) or (
                    resolver.module(full) is not None and full in resolver.modules
                ):
                    new_full = resolver.module(full)
                    assert new_full is not None
                    parent, base = new_full.rsplit(".", 1)
                    move = resolver.modules.get(full)
                    bound = alias.asname or alias.name
                    if alias.asname:
                        asname = None if alias.asname == base else alias.asname
                    else:
                        preferred = move.bound_name if move else base
                        if preferred != bound:
                            wanted.append((node, bound, preferred, base))
                        asname = None if preferred == base else preferred
                        if preferred != base and preferred == bound:
                            asname = bound
                    new_names.append((parent, base, asname))
                    changed = True
                    continue
                target = resolver.symbol(node.module, alias.name)
                if target is not None:
                    new_names.append((target, alias.name, alias.asname))
                    changed = True
                else:
                    new_names.append((node.module, alias.name, alias.asname))
            if changed:
                imports.append((node, new_names))
        elif isinstance(node, ast.Import):
            new_names = []
            changed = False
            for alias in node.names:
                new = resolver.module(alias.name)
                if new is not None:
                    changed = True
                new_names.append(("", new or alias.name, alias.asname))
            if changed:
                imports.append((node, new_names))

    # Decide the renames: safe when neither name is bound by anything else in the file.
    rewriting = {id(n) for n, _ in imports}
    bound_elsewhere = _bindings(tree, rewriting)
    uses = _loads(tree)
    decided: dict[int, dict[str, str]] = {}
    """node id → {new base: alias to use}, for imports that must keep the old name."""
    targets_taken: dict[str, str] = {}
    for node, old, new, base in wanted:
        clash = (
            old in bound_elsewhere
            or new in bound_elsewhere
            or (new in uses and new not in renames.values() and new != old)
            or targets_taken.get(new, old) != old
        )
        if clash:
            decided.setdefault(id(node), {})[base] = old
            report.aliased.append(f"{old} (kept as the name of {base})")
        else:
            renames[old] = new
            targets_taken[new] = old
    if renames:
        report.renamed = [f"{o} → {n}" for o, n in renames.items()]

    edits: list[tuple[int, int, int, int, str]] = []
    for node, new_names in imports:
        start, end = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        first, last = lines[start], lines[end]
        indent = first[: _col(first, node.col_offset)]
        if first[: len(indent)].strip():
            raise Refused(f"{path}:{node.lineno}: an import shares its line; rewrite by hand")
        tail = last[_col(last, node.end_col_offset or 0) :]
        comment = tail.strip()
        statements: list[str] = []
        if isinstance(node, ast.ImportFrom):
            groups: dict[str, list[str]] = {}
            for module, name, asname in new_names:
                assert name is not None
                fixed = decided.get(id(node), {})
                if name in fixed and asname is None and module != node.module:
                    asname = fixed[name]
                if asname == name:
                    asname = None
                groups.setdefault(module, []).append(f"{name} as {asname}" if asname else name)
            statements = [f"from {m} import {', '.join(n)}" for m, n in groups.items()]
        else:
            statements = [
                "import " + ", ".join(f"{n} as {a}" if a else f"{n}" for _, n, a in new_names)
            ]
        text = f"\n{indent}".join(statements)
        if comment and not comment.startswith("#"):
            raise Refused(f"{path}:{node.lineno}: code follows an import on its line")
        if comment:
            text += f"  {comment}"
        edits.append((start, len(indent), end, len(last.rstrip("\r\n")), text))

    for old, new in renames.items():
        for use in uses.get(old, []):
            line = lines[use.lineno - 1]
            a, b = _col(line, use.col_offset), _col(line, use.end_col_offset or 0)
            if line[a:b] != old:
                raise Refused(f"{path}:{use.lineno}: cannot place the rename of {old}")
            edits.append((use.lineno - 1, a, use.lineno - 1, b, new))

    for start, a, end, b, text in sorted(edits, reverse=True):
        head = lines[start][:a]
        rest = lines[end][b:]
        lines[start : end + 1] = [head + text + rest]
    result = "".join(lines)
    if renames:
        check = _loads(ast.parse(result))
        left = [old for old in renames if old in check]
        if left:
            raise Refused(f"{path}: uses of {left} were not all renamed")
    return result, report


# --- rewriting text ----------------------------------------------------------------------

DOTTED = re.compile(r"(?<![\w.])kittylab(?:\.\w+)+")
PATH = re.compile(r"(?<![\w/])((?:src/)?kittylab/)((?:\w+/)*\w+)(\.py\b|/)")
SHORT_PATH = re.compile(
    r"(?<![\w/.])((?:services|routing|understanding|adapters/devices)/\w+)\.py\b"
)
SHORT_DOTTED = re.compile(r"(?<![\w./])services\.(\w+)\b")


def rewrite_text(text: str, resolver: Resolver, prose: dict[str, tuple[str, set[str]]]) -> str:
    """Dotted names, paths and backticked module names in any text."""

    def dotted(match: re.Match[str]) -> str:
        return resolver.dotted(match.group(0))

    def path(match: re.Match[str]) -> str:
        prefix, rest, end = match.groups()
        module = "kittylab." + rest.replace("/", ".")
        new = resolver.module(module)
        if new is None:
            return match.group(0)
        return prefix + "/".join(new.split(".")[1:]) + end

    def short_path(match: re.Match[str]) -> str:
        module = "kittylab." + match.group(1).replace("/", ".")
        new = resolver.module(module)
        if new is None:
            return match.group(0)
        return "/".join(new.split(".")[1:]) + ".py"

    def short_dotted(match: re.Match[str]) -> str:
        new = resolver.module(S + match.group(1))
        return new.split(".", 1)[1] if new else match.group(0)

    text = DOTTED.sub(dotted, text)
    text = PATH.sub(path, text)
    text = SHORT_PATH.sub(short_path, text)
    text = SHORT_DOTTED.sub(short_dotted, text)
    for old, (new, defined) in prose.items():

        def attribute(match: re.Match[str], new: str = new, defined: set[str] = defined) -> str:
            return f"{new}.{match.group(1)}" if match.group(1) in defined else match.group(0)

        text = re.sub(rf"(?<=`){re.escape(old)}\.(\w+)", attribute, text)
        if "_" in old:
            text = re.sub(rf"(?<=`){re.escape(old)}(?=`)", new, text)
    return text


def prose_names(root: Path, resolver: Resolver) -> dict[str, tuple[str, set[str]]]:
    """Old module base names whose bound name changes → (new bound name, names the module
    defines), for backticked references in prose."""
    out: dict[str, tuple[str, set[str]]] = {}
    for move in resolver.modules.values():
        old = move.old.rsplit(".", 1)[1]
        if old == move.bound_name:
            continue
        path = module_path(root, move.new)
        if path is not None:
            out[old] = (move.bound_name, set(top_level_names(path.read_text())))
    return out


# --- doing it ----------------------------------------------------------------------------


def package_init(root: Path, package: str) -> str:
    """The docstring-only ``__init__`` of a capability package, from its modules."""
    directory = root / "src" / Path(*package.split("."))
    lines = [PACKAGES[package], "", "Modules:", ""]
    entries: list[tuple[str, str]] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            entries.append((path.name + "/", _first_sentence(path / "__init__.py")))
        elif path.suffix == ".py":
            dotted = f"{package}.{path.stem}"
            entries.append((path.stem, SURFACE.get(dotted) or _first_sentence(path)))
    for name, what in entries:
        head = f"- ``{name}``: "
        lines += _wrap(head + what, indent="  ")
    body = "\n".join(lines).rstrip()
    return f'"""{body}\n"""\n'


def _first_sentence(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or "(no docstring)"
    first = " ".join(doc.split("\n\n")[0].split())
    cut = re.split(r"(?<=[.:])\s", first, maxsplit=1)[0]
    return cut.rstrip(".:")


def _wrap(text: str, *, indent: str, width: int = 92) -> list[str]:
    words, lines, current = text.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = indent + word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines


def is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def move_symbols(root: Path, smove: SymbolMove) -> set[Path]:
    """Cut ``smove.names`` (with their comments and decorators) from their module into
    ``smove.new``, bringing the source's imports along (ruff drops the unused ones)."""
    current = current_module(root, smove.module)
    assert current is not None
    source_path = module_path(root, current)
    assert source_path is not None
    target_path = file_for(root, smove.new)
    source = source_path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for node in tree.body:
        name = getattr(node, "name", None)
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            name = next((t.id for t in targets if isinstance(t, ast.Name)), None)
        if name not in smove.names:
            continue
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)]) - 1
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        end = node.end_lineno or node.lineno
        cut.append((start, end))
    moved = "".join("".join(lines[a:b]) + "\n\n" for a, b in sorted(cut))
    for a, b in sorted(cut, reverse=True):
        del lines[a:b]
    source_imports = [
        ast.get_source_segment(source, n) or ""
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
    ]
    source_path.write_text("".join(lines))
    target = target_path.read_text() if target_path.is_file() else '"""Ports."""\n'
    target_tree = ast.parse(target)
    target_lines = target.splitlines(keepends=True)
    last_import = max(
        (
            n.end_lineno or n.lineno
            for n in target_tree.body
            if isinstance(n, ast.Import | ast.ImportFrom)
        ),
        default=1,
    )
    target_lines[last_import:last_import] = [line + "\n" for line in source_imports]
    target_path.write_text("".join(target_lines).rstrip("\n") + "\n\n\n" + moved.rstrip() + "\n")
    return {source_path, target_path}


@dataclass
class Run:
    root: Path
    dry: bool = False
    touched: set[Path] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    """The step's modules by their new dotted names, for the import check."""

    def git_mv(self, source: Path, target: Path) -> None:
        self.log.append(f"git mv {source.relative_to(self.root)} {target.relative_to(self.root)}")
        if self.dry:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        git(self.root, "mv", str(source.relative_to(self.root)), str(target.relative_to(self.root)))
        self.touched.add(target)

    def write(self, path: Path, text: str) -> None:
        if path.is_file() and path.read_text() == text:
            return
        self.log.append(f"write {path.relative_to(self.root)}")
        if not self.dry:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            self.touched.add(path)


def run_step(root: Path, step: str, *, dry: bool) -> Run:
    plan = make_plan(root, [step])
    if plan.problems:
        raise Refused("\n".join(plan.problems))
    run = Run(root, dry)
    for move in plan.moves:
        source = module_path(root, move.old)
        assert source is not None
        if source.name == "__init__.py":
            raise Refused(f"{move.old} is a package: use a PackageMove")
        run.git_mv(source, file_for(root, move.new))
        run.moved.append(move.new)
    for pmove in plan.package_moves:
        source_dir = root / "src" / Path(*pmove.old.split("."))
        target_dir = root / "src" / Path(*pmove.new.split("."))
        for path in sorted(source_dir.rglob("*.py")):
            target = target_dir / path.relative_to(source_dir)
            run.git_mv(path, target)
            parts = target.relative_to(root / "src").with_suffix("").parts
            run.moved.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    if dry:
        for smove in plan.symbol_moves:
            run.log.append(f"cut {', '.join(smove.names)} from {smove.module} into {smove.new}")
        return run
    symbol_files: set[Path] = set()
    for smove in plan.symbol_moves:
        symbol_files |= move_symbols(root, smove)
        run.log.append(f"cut {', '.join(smove.names)} from {smove.module} into {smove.new}")
    run.touched |= symbol_files
    for module, paragraph in PREFACE.items():
        found = module_path(root, module)
        if found is not None and (module in run.moved or found in symbol_files):
            text = found.read_text()
            if paragraph not in text and text.startswith('"""'):
                run.write(found, f'"""{paragraph}\n\n{text[3:]}')

    # Every reference, everywhere: the resolver knows this step's moves and earlier ones.
    resolver = Resolver.of(make_plan(root, []))
    resolver.modules.update({m.old: m for m in plan.moves})
    resolver.packages.update({p.old: p for p in plan.package_moves})
    resolver._root = root
    for smove in plan.symbol_moves:
        for home in {smove.module, current_module(root, smove.module) or smove.module}:
            for name in smove.names:
                resolver.symbols[(home, name)] = smove.new
    for redirect in REDIRECTS:
        for name in active_redirects(root, redirect):
            resolver.symbols[(redirect.module, name)] = redirect.new
    prose = prose_names(root, resolver)
    for path in text_files(root):
        try:
            before = path.read_text()
        except UnicodeDecodeError:
            continue
        after = before
        if path.suffix == ".py":
            after, report = rewrite_python(path, after, resolver)
            relative = path.relative_to(root)
            for item in report.renamed:
                run.log.append(f"  {relative}: uses renamed {item}")
            for item in report.aliased:
                run.log.append(f"  {relative}: imported as {item}")
        after = rewrite_text(after, resolver, prose)
        if after != before:
            path.write_text(after)
            run.touched.add(path)

    for package in sorted({p for p in PACKAGES if _in_step(p, plan)}):
        init = root / "src" / Path(*package.split(".")) / "__init__.py"
        if init.is_file() and not is_docstring_only(init):
            raise Refused(f"{init.relative_to(root)} has code: write its docstring by hand")
        run.write(init, package_init(root, package))
    services = root / "src/kittylab/services"
    if services.is_dir() and not [p for p in services.glob("*.py") if p.name != "__init__.py"]:
        init = services / "__init__.py"
        if init.is_file():
            git(root, "rm", "-q", str(init.relative_to(root)))
            run.log.append("git rm src/kittylab/services/__init__.py")
    tidy(root, run.touched, symbol_files)
    return run


def active_redirects(root: Path, redirect: SymbolMove) -> list[str]:
    """The names of ``redirect`` that ``new`` defines and ``module`` no longer does."""
    source, target = module_path(root, redirect.module), module_path(root, redirect.new)
    if source is None or target is None:
        return []
    left = set(top_level_names(source.read_text()))
    there = set(top_level_names(target.read_text()))
    return [n for n in redirect.names if n in there and n not in left]


def _in_step(package: str, plan: Plan) -> bool:
    news = [m.new for m in plan.moves] + [p.new for p in plan.package_moves]
    return any(n.startswith(package + ".") for n in news)


def tool(root: Path, name: str) -> str:
    """A tool from the venv running this script, else the repo's, else PATH."""
    for candidate in (Path(sys.executable).parent / name, root / ".venv/bin" / name):
        if candidate.is_file():
            return str(candidate)
    return name


def tidy(root: Path, touched: set[Path], symbol_files: set[Path]) -> None:
    """Sort imports (and drop those a symbol move left unused), then format."""
    py = sorted(str(p) for p in touched if p.suffix == ".py" and p.is_file())
    if not py:
        return
    ruff = tool(root, "ruff")
    select = ["--select", "I"] if not symbol_files else ["--select", "I,F401"]
    subprocess.run([ruff, "check", "-q", "--fix", *select, *py], cwd=root, check=False)
    subprocess.run([ruff, "format", "-q", *py], cwd=root, check=False)


def verify(root: Path, modules: Sequence[str]) -> list[str]:
    """ruff, format, mypy, unit tests, and each moved module imported first in a fresh
    interpreter; the failures' names."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    python = sys.executable
    checks = [
        ("ruff", [tool(root, "ruff"), "check", "src", "tests", "benchmarks", "scripts"]),
        ("format", [tool(root, "ruff"), "format", "--check", "src", "tests", "benchmarks"]),
        ("mypy", [tool(root, "mypy"), "src"]),
        ("unit", [python, "-m", "pytest", "tests/unit", "-q", "-x", "-p", "no:cacheprovider"]),
    ]
    failed = []
    for name, command in checks:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        print(f"  {name}: {'ok' if done.returncode == 0 else 'FAILED'}", flush=True)
        if done.returncode:
            print((done.stdout + done.stderr)[-4000:])
            failed.append(name)
    for module in sorted(set(modules)):
        done = subprocess.run(
            [python, "-c", f"import {module}"], cwd=root, env=env, capture_output=True, text=True
        )
        if done.returncode:
            print(f"  import {module}: FAILED\n{done.stderr[-2000:]}")
            failed.append(f"import {module}")
    if modules:
        imports_failed = [f for f in failed if f.startswith("import ")]
        print(f"  imports, each first in a fresh interpreter: {len(set(modules))} modules, "
              f"{'ok' if not imports_failed else 'FAILED'}")  # fmt: skip
    return failed


def commit(root: Path, step: str, run: Run) -> None:
    paths = sorted(str(p.relative_to(root)) for p in run.touched if p.exists())
    if paths:
        git(root, "add", "--", *paths)
    if not git(root, "diff", "--cached", "--name-only").strip():
        print(f"  nothing to commit for {step}")
        return
    moves = "\n".join(f"- {line}" for line in run.log if line.startswith("git mv"))
    message = (
        f"Packages by capability: {STEPS[step]}\n\n"
        f"Moved by scripts/dev/move_packages.py (step {step}); imports and dotted names "
        f"rewritten, no behaviour changed.\n\n{moves}\n"
    )
    git(root, "commit", "-q", "-m", message)
    print(f"  committed {git(root, 'rev-parse', '--short', 'HEAD').strip()}")


# --- the command line --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "apply", "steps"])
    parser.add_argument("--step", action="append", choices=list(STEPS), help="only these")
    parser.add_argument("--commit", action="store_true", help="commit each step")
    parser.add_argument("--verify", action="store_true", help="check each step before commit")
    parser.add_argument("--dry-run", action="store_true", help="say what apply would do")
    parser.add_argument("--repo", type=Path, default=None, help="the repository (default: here)")
    args = parser.parse_args(argv)
    root = (args.repo or Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())).resolve()
    steps = args.step or list(STEPS)

    if args.action == "steps":
        for step, what in STEPS.items():
            print(f"{step:13} {what}")
        return 0

    plan = make_plan(root, steps)
    for note in plan.notes:
        print(f"note: {note}")
    if plan.problems:
        print("refusing to run:", file=sys.stderr)
        for problem in plan.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.action == "check":
        for step in steps:
            print(f"[{step}] {STEPS[step]}")
            for move in [m for m in plan.moves if m.step == step]:
                print(f"  {move.old} → {move.new}")
            for pmove in [p for p in plan.package_moves if p.step == step]:
                print(f"  {pmove.old}.* → {pmove.new}.*")
            for smove in [s for s in plan.symbol_moves if s.step == step]:
                print(f"  {smove.module}: {', '.join(smove.names)} → {smove.new}")
        print(f"already done: {len(plan.done)} modules, {len(plan.packages_done)} packages")
        return 0

    if args.commit and not args.dry_run:
        # Staged changes are allowed: they go into the first commit (the CAD patch applied
        # with ``git apply --index`` before ``--step cad-split``).
        dirty = git(root, "diff", "--name-only").strip()
        if dirty:
            print(f"refusing to commit with unstaged changes:\n{dirty}", file=sys.stderr)
            return 2
    for step in steps:
        print(f"[{step}] {STEPS[step]}", flush=True)
        try:
            run = run_step(root, step, dry=args.dry_run)
        except Refused as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 2
        for line in run.log:
            print(f"  {line}")
        if args.dry_run:
            continue
        if args.verify:
            failed = verify(root, run.moved)
            if failed:
                print(f"step {step} failed {failed}; fix, then run it again", file=sys.stderr)
                return 1
        if args.commit:
            commit(root, step, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
