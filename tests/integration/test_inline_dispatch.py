"""Commands sent from the accepting process right after their commit (issue 14), with the
durable job queue as the backstop: on the real database, broker and simulated lab."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import DeviceCommand, User
from kittylab.config import CommandSettings
from kittylab.devices.inline_dispatch import InlineDispatcher
from kittylab.devices.requests import request_command
from kittylab.domain.actuation import SystemActor
from kittylab.domain.enums import CommandStatus
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.live_bus import bring_online, live_lab
from tests.integration.test_command_dispatch import device_id, load

FAST = CommandSettings(ack_timeout_seconds=2, poll_interval_seconds=0.05)


class RecordingQueue:
    """The durable queue's stand-in: what reached it."""

    def __init__(self) -> None:
        self.dispatches: list[UUID] = []

    def defer_dispatch(self, command_id: UUID) -> None:
        self.dispatches.append(command_id)

    def defer_dispatch_in_order(self, command_ids: object) -> None:
        raise AssertionError("not expected")

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        raise AssertionError("no notification expected")

    def defer_print_preparation(self, job_id: UUID) -> None:
        raise AssertionError("not expected")

    def defer_start_next(self, device_id: UUID) -> None:
        raise AssertionError("not expected")


@pytest.fixture
def lab(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> UUID:
    """The demo lab applied and reported once (online); returns its admin's id."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        admin = s.scalars(select(User.id).where(User.username == "ada")).one()
    bring_online(container)
    return admin


def _request(container: bootstrap.Container, jobs: InlineDispatcher, admin: UUID) -> UUID:
    """``light_set_brightness`` on the bench lights through the one use case; the unit of
    work runs its follow-up (``jobs.defer_dispatch``) once it has committed."""
    with container.database.unit_of_work() as uow:
        requested = request_command(
            uow,
            jobs=jobs,
            device_id=device_id(container.database, "bench-lights"),
            intent="light_set_brightness",
            payload={"brightness": 42},
            requester=SystemActor("test", admin),
            now=container.clock(),
        )
        return requested.command.id


async def _until_decided(database: Database, command_id: UUID, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while load(database, command_id).status in (CommandStatus.PENDING, CommandStatus.SENT):
        assert time.monotonic() < deadline, "the command was not decided in time"
        await asyncio.sleep(0.02)


def _start(dispatcher: InlineDispatcher, container: bootstrap.Container) -> None:
    """Attached as ``kittylab serve`` attaches it, with drivers on the live bus."""
    dispatcher.start(
        asyncio.get_running_loop(),
        database=container.database,
        drivers=container.drivers,
        settings=FAST,
        notify=container.settings.notify,
        clock=container.clock,
    )


def test_before_the_server_loop_attaches_it_a_command_goes_to_the_durable_queue(
    container: bootstrap.Container, lab: UUID
) -> None:
    durable = RecordingQueue()
    command_id = _request(container, InlineDispatcher(durable), lab)
    assert durable.dispatches == [command_id]
    assert load(container.database, command_id).status is CommandStatus.PENDING


def test_a_committed_command_is_sent_from_the_process_and_acked_without_a_job(
    container: bootstrap.Container, lab: UUID
) -> None:
    durable = RecordingQueue()
    dispatcher = InlineDispatcher(durable)

    async def scenario() -> UUID:
        async with live_lab(container) as (_bus, fleet, wired):
            _start(dispatcher, wired)
            # The request runs in a thread, as a sync route does; its follow-up hands the
            # command to this loop.
            command_id = await asyncio.to_thread(_request, container, dispatcher, lab)
            await _until_decided(container.database, command_id)
            light = fleet.devices[device_id(container.database, "bench-lights")]
            assert light.snapshot()["brightness"] == 42
            await dispatcher.stop()
            return command_id

    command_id = asyncio.run(scenario())
    assert durable.dispatches == []
    command = load(container.database, command_id)
    assert [h["status"] for h in command.status_history] == ["pending", "sent", "acked"]


def test_on_start_the_commands_an_earlier_run_left_pending_are_sent_once(
    container: bootstrap.Container, lab: UUID
) -> None:
    # Committed, then the process died before its send: nothing but the row is left.
    left = _request(container, InlineDispatcher(RecordingQueue()), lab)
    durable = RecordingQueue()
    dispatcher = InlineDispatcher(durable)

    async def scenario() -> int:
        async with live_lab(container) as (_bus, _fleet, wired):
            _start(dispatcher, wired)
            taken = await dispatcher.recover(container.clock())
            await _until_decided(container.database, left)
            again = await dispatcher.recover(container.clock())  # decided: nothing to take
            await dispatcher.stop()
            return taken + again

    assert asyncio.run(scenario()) == 1
    assert durable.dispatches == []
    assert [h["status"] for h in load(container.database, left).status_history] == [
        "pending",
        "sent",
        "acked",
    ]


def test_too_many_in_flight_go_to_the_durable_queue_instead(
    container: bootstrap.Container, lab: UUID
) -> None:
    durable = RecordingQueue()
    dispatcher = InlineDispatcher(durable, max_in_flight=0)

    async def scenario() -> UUID:
        async with live_lab(container) as (_bus, _fleet, wired):
            _start(dispatcher, wired)
            command_id = await asyncio.to_thread(_request, container, dispatcher, lab)
            await dispatcher.stop()
            return command_id

    command_id = asyncio.run(scenario())
    assert durable.dispatches == [command_id]
    with container.database.unit_of_work() as s:
        assert s.get(DeviceCommand, command_id).status is CommandStatus.PENDING  # type: ignore[union-attr]
