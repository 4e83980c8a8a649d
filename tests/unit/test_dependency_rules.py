"""Dependencies point inward (docs/architecture.md): an adapter imports the ports it
implements, the domain and the pure parts of a capability, never a use case or an
entrypoint. And because ``ProcrastinateQueue`` defers jobs by the names of the one table
of deferred tasks without loading the tasks (they call use cases), the worker must
register every task that table names, taking the argument it passes."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import procrastinate
from procrastinate import jobs
from procrastinate.testing import InMemoryConnector

import kittylab
from kittylab.adapters.jobs.deferrals import DEFERRALS, NAMESPACE
from kittylab.worker.tasks import job_blueprint

SRC = Path(kittylab.__file__).parent
ADAPTERS = SRC / "adapters"

# What any adapter may import: everything under these, and nothing else of kittylab
# unless the rules below allow it.
SHARED = {"kittylab", "kittylab.adapters", "kittylab.domain", "kittylab.config"}
SHARED_MODULES = {"kittylab.ports", "kittylab.observability"}
# A capability's modules an adapter may import: its ports and its errors...
PORT_MODULES = {"ports", "errors"}
# ...and the modules that are pure (their docstrings say so): rules and types, no I/O.
PURE = ("kittylab.conversation.understanding", "kittylab.safety.command_signature")
# Adapter → use case imports that stay, with their reason. Keep this short.
EXCEPTIONS = {
    ("kittylab.adapters.db.lab_metrics", "kittylab.records.audit"): (
        "the lab's metrics export the audit chain's verification (audit.verify_chain)"
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    base = SRC.parent / Path(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(path: Path) -> Iterator[str]:
    """Every kittylab module ``path`` imports, anywhere in the file (function bodies,
    ``TYPE_CHECKING`` blocks); ``from package import module`` names the module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if is_module(candidate) else base


def allowed(importer: str, imported: str) -> bool:
    if not imported.startswith("kittylab"):
        return True
    if imported in SHARED or imported in SHARED_MODULES:
        return True
    if any(imported.startswith(f"{shared}.") for shared in SHARED - {"kittylab"}):
        return True
    if imported.rsplit(".", 1)[-1] in PORT_MODULES:
        return True
    if any(imported == pure or imported.startswith(f"{pure}.") for pure in PURE):
        return True
    return (importer, imported) in EXCEPTIONS


def test_adapters_import_no_use_case_and_no_entrypoint() -> None:
    found = [
        f"{module_name(path)} imports {imported}"
        for path in sorted(ADAPTERS.rglob("*.py"))
        if "migrations" not in path.parts
        for imported in imported_modules(path)
        if not allowed(module_name(path), imported)
    ]
    assert found == [], (
        "an adapter imports the ports it implements, never a use case (docs/architecture.md); "
        "move the caller to an entrypoint (api/, cli/, worker/) or the rule into a pure module"
    )


def test_the_exceptions_are_still_needed() -> None:
    imports = {
        (module_name(path), imported)
        for path in ADAPTERS.rglob("*.py")
        for imported in imported_modules(path)
    }
    assert set(EXCEPTIONS) <= imports, "drop the exception nobody needs any more"


def test_the_rule_sees_an_adapter_importing_a_use_case() -> None:
    assert not allowed("kittylab.adapters.x", "kittylab.safety.workflow")
    assert not allowed("kittylab.adapters.x", "kittylab.worker.tasks")
    assert not allowed("kittylab.adapters.x", "kittylab.bootstrap")
    assert allowed("kittylab.adapters.x", "kittylab.devices.ports")
    assert allowed("kittylab.adapters.x", "kittylab.domain.errors")


def test_every_deferred_task_is_registered_by_the_worker_with_its_argument() -> None:
    app = procrastinate.App(connector=InMemoryConnector())
    app.add_tasks_from(job_blueprint(), namespace=NAMESPACE)
    for kind, deferral in DEFERRALS.items():
        task = app.tasks.get(deferral.task)
        assert task is not None, f"{kind}: the worker registers no task {deferral.task}"
        assert deferral.argument in inspect.signature(task.func).parameters, kind
        # Deferred by name, a job gets the default queue, priority and no lock of the
        # task's own: the task must not set them, or the two sides would store different
        # jobs.
        assert (task.queue, task.priority, task.lock, task.queueing_lock) == (
            jobs.DEFAULT_QUEUE,
            jobs.DEFAULT_PRIORITY,
            None,
            None,
        ), kind
