"""The unit of work: one database transaction, and what must happen once it has committed.

A write is one use case taking a ``UnitOfWork`` (a SQLAlchemy ``Session``, so every
existing query keeps working). What the write entails outside the database — send the
command, publish the event, defer a job — is *registered* on it with
``uow.after_commit(fn, *args)`` and runs only once the transaction has committed, so a job
never looks for a row that does not exist yet and nothing is announced that was rolled
back. Nobody commits and then defers by hand.

The contract:

- **After the commit, once.** Each registered follow-up runs once, in registration order,
  right after the commit that made its transaction durable. ``Database.unit_of_work``
  commits when its block ends; a use case that commits early (``uow.commit()``, to keep a
  refusal's audit entry before raising) runs the follow-ups registered so far right
  then, and those registered afterwards after the final commit: none is lost, none runs
  twice.
- **Never after a rollback.** A rollback drops every follow-up of the transaction; a
  savepoint (``uow.begin_nested()``) that rolls back drops the ones registered inside it
  and keeps the others. Closing the session without committing drops them too.
- **A failure is logged and does not spread.** A follow-up that raises is logged with what
  it was (the function and its arguments); the commit stands, and the next follow-ups
  still run. Follow-ups run outside the transaction (its connection is back in the pool)
  and must not use the session they were registered on.
- **Reconciliation catches up.** What a failed follow-up missed is redone by a periodic
  task (``kittylab.ports.CAUGHT_UP_BY`` names which one, and the log line says it):

  ====================================  ===============================================
  follow-up                             caught up by
  ====================================  ===============================================
  ``JobQueue.defer_dispatch``           ``reconcile_commands``: pending commands no job
                                        covers, every minute
  ``JobQueue.defer_notification``       ``sweep_notifications``: due notifications, every
                                        minute
  ``JobQueue.defer_print_preparation``  ``advance_print_queues``: jobs still slicing
                                        after ten minutes
  ``JobQueue.defer_start_next``         ``advance_print_queues``: printers with queued
                                        jobs, every minute
  ``CadJobQueue.defer_cad_job``         ``resume_cad_jobs``: queued CAD jobs no run
                                        covers, every minute
  ``MessageBus.publish``                nothing: the bus keeps messages until it is
                                        connected; the records (``GET`` routes) stay the
                                        truth
  ====================================  ===============================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVarTuple, Unpack

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from kittylab.domain.errors import KittyLabError
from kittylab.ports import CAUGHT_UP_BY

log = logging.getLogger(__name__)

Args = TypeVarTuple("Args")


@dataclass(frozen=True)
class FollowUp:
    """A callable and its arguments, and the savepoint it was registered in (None: the
    transaction itself)."""

    fn: Callable[..., object]
    args: tuple[object, ...]
    savepoint: SessionTransaction | None

    def describe(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"{name}({', '.join(str(a) for a in self.args)})"

    def catch_up(self) -> str:
        task = CAUGHT_UP_BY.get(getattr(self.fn, "__name__", ""))
        return (
            f"the periodic {task} task catches it up"
            if task
            else "nothing retries it; the records stay the truth"
        )

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except Exception as exc:  # the commit stands; one failure must not stop the rest
            log.warning(
                "after commit, %s failed (%s: %s); %s",
                self.describe(),
                type(exc).__name__,
                exc,
                self.catch_up(),
                exc_info=not isinstance(exc, KittyLabError),
            )


class UnitOfWork(Session):
    """A ``Session`` that also keeps what must happen once its transaction commits (see
    the module docstring for the contract). Built by ``Database`` (its sessionmaker's
    ``class_``), so every ``database.unit_of_work()`` block and request has one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._follow_ups: list[FollowUp] = []

    def after_commit(self, fn: Callable[[Unpack[Args]], object], *args: *Args) -> None:
        """Run ``fn(*args)`` once this transaction has committed; never if it rolls back
        (or if the savepoint this is called in does)."""
        self._follow_ups.append(FollowUp(fn, tuple(args), self.get_nested_transaction()))

    @property
    def pending_follow_ups(self) -> tuple[FollowUp, ...]:
        """What will run at the next commit, in order."""
        return tuple(self._follow_ups)

    def commit(self) -> None:
        super().commit()
        self._run_follow_ups()

    def close(self) -> None:
        self._follow_ups.clear()  # never committed: nothing of it may happen
        super().close()

    def _run_follow_ups(self) -> None:
        # Taken first: a follow-up that registers another (it should not) cannot make this
        # loop run forever, and a later commit never runs one of these again.
        due, self._follow_ups = self._follow_ups, []
        for follow_up in due:
            follow_up.run()

    def _rolled_back(self, transaction: SessionTransaction) -> None:
        if not transaction.nested:
            self._follow_ups.clear()
            return
        self._follow_ups = [f for f in self._follow_ups if not _within(f.savepoint, transaction)]


def _within(savepoint: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    """Whether ``savepoint`` is ``rolled_back`` or nested inside it."""
    current = savepoint
    while current is not None:
        if current is rolled_back:
            return True
        current = current.parent
    return False


@event.listens_for(UnitOfWork, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if isinstance(session, UnitOfWork):
        session._rolled_back(previous_transaction)
