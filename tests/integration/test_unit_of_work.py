"""The unit of work's after-commit contract, on the real database: follow-ups run once,
after the commit that made their rows durable, never after a rollback; a failing one is
logged and neither undoes the commit nor stops the others."""

from __future__ import annotations

import logging
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Zone
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.domain.enums import HazardLevel
from kittylab.domain.errors import InfrastructureError


class Probe:
    """Follow-ups that record what they saw of the database when they ran."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.ran: list[tuple[str, bool]] = []

    def note(self, label: str, zone: str) -> None:
        # From another connection: only committed rows are visible there.
        with self.database.unit_of_work() as other:
            visible = other.scalar(select(Zone.id).where(Zone.name == zone)) is not None
        self.ran.append((label, visible))

    def defer_dispatch(self, command_id: UUID) -> None:
        raise InfrastructureError(f"cannot defer dispatch of command {command_id}: PoolTimeout")


def _zone(name: str) -> Zone:
    return Zone(name=name, hazard_level=HazardLevel.LOW)


def test_follow_ups_run_once_in_order_after_the_commit_made_their_rows_visible(
    database: Database,
) -> None:
    probe = Probe(database)
    with database.unit_of_work() as uow:
        uow.add(_zone("bench"))
        uow.flush()
        uow.after_commit(probe.note, "first", "bench")
        uow.after_commit(probe.note, "second", "bench")
        assert probe.ran == []
    assert probe.ran == [("first", True), ("second", True)]


def test_a_rolled_back_transaction_runs_none_of_its_follow_ups(database: Database) -> None:
    probe = Probe(database)

    def refused() -> None:
        with database.unit_of_work() as uow:
            uow.add(_zone("bench"))
            uow.after_commit(probe.note, "never", "bench")
            raise RuntimeError("the use case refused")

    with pytest.raises(RuntimeError):
        refused()
    assert probe.ran == []


def test_an_early_commit_runs_what_was_registered_so_far_and_never_again(
    database: Database,
) -> None:
    probe = Probe(database)
    with database.unit_of_work() as uow:
        uow.add(_zone("bench"))
        uow.after_commit(probe.note, "before", "bench")
        uow.commit()
        assert probe.ran == [("before", True)]
        uow.add(_zone("annex"))
        uow.after_commit(probe.note, "after", "annex")
    assert probe.ran == [("before", True), ("after", True)]


def test_work_after_an_early_commit_that_rolls_back_keeps_what_already_ran(
    database: Database,
) -> None:
    probe = Probe(database)

    def refused_after_committing() -> None:
        with database.unit_of_work() as uow:
            uow.add(_zone("bench"))
            uow.after_commit(probe.note, "committed", "bench")
            uow.commit()
            uow.after_commit(probe.note, "rolled back", "bench")
            raise RuntimeError("refused after the commit")

    with pytest.raises(RuntimeError):
        refused_after_committing()
    assert probe.ran == [("committed", True)]


def test_a_savepoint_that_rolls_back_drops_only_the_follow_ups_registered_in_it(
    database: Database,
) -> None:
    probe = Probe(database)

    def refused_step(uow: UnitOfWork) -> None:
        with uow.begin_nested():
            uow.after_commit(probe.note, "in the savepoint", "bench")
            with uow.begin_nested():
                uow.after_commit(probe.note, "nested deeper", "bench")
            raise RuntimeError("a refused step")

    with database.unit_of_work() as uow:
        uow.add(_zone("bench"))
        uow.after_commit(probe.note, "outer", "bench")
        with pytest.raises(RuntimeError):
            refused_step(uow)
        with uow.begin_nested():
            uow.after_commit(probe.note, "released savepoint", "bench")
    assert probe.ran == [("outer", True), ("released savepoint", True)]


def test_a_released_savepoint_s_follow_ups_go_with_the_transaction_that_rolls_back(
    database: Database,
) -> None:
    probe = Probe(database)

    def failed_request() -> None:
        with database.unit_of_work() as uow:
            with uow.begin_nested():
                uow.after_commit(probe.note, "released", "bench")
            raise RuntimeError("the whole request fails")

    with pytest.raises(RuntimeError):
        failed_request()
    assert probe.ran == []


def test_a_failing_follow_up_is_logged_with_its_catch_up_and_the_others_still_run(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(database)
    command_id = UUID(int=42)
    with caplog.at_level(logging.WARNING), database.unit_of_work() as uow:
        uow.add(_zone("bench"))
        uow.after_commit(probe.defer_dispatch, command_id)
        uow.after_commit(probe.note, "next", "bench")
    assert probe.ran == [("next", True)]  # the commit stood, the next one ran
    [record] = [r for r in caplog.records if r.name == "kittylab.adapters.db.unit_of_work"]
    message = record.getMessage()
    assert f"Probe.defer_dispatch({command_id})" in message
    assert "PoolTimeout" in message
    assert "reconcile_commands" in message
    with database.unit_of_work() as uow:
        assert uow.scalar(select(Zone.name)) == "bench"
