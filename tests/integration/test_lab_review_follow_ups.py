"""A held lab change's follow-ups are the review use case's (``manifest.review.submit``):
it registers them on its unit of work, the event announced on ``kitty/safety/<eventId>``
and then each approver's notification delivered; a dry run rolls back and registers
nothing, so nothing is announced or deferred."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
import yaml
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import SafetyEvent
from kittylab.domain import topics
from kittylab.domain.enums import Role
from kittylab.domain.principal import Principal
from kittylab.manifest import parse_manifest, review
from tests.integration.conftest import Person
from tests.integration.test_manifest_review import (  # noqa: F401 - fixtures
    demo_data,
    demo_lab,
    people,
    weakened,
)

pytestmark = pytest.mark.postgres


@dataclass
class Recorder:
    """The bus and the job queue as the use case sees them: what reached them, in order."""

    calls: list[tuple[str, object]] = field(default_factory=list)

    def publish(
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any] | list[Any],
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        self.calls.append(("publish", topic))

    def subscribe(self, topic_filter: str, handler: Any) -> None:
        raise AssertionError("the review subscribes to nothing")

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        self.calls.append(("defer_notification", notification_id))

    def defer_dispatch(self, command_id: UUID) -> None:
        self.calls.append(("defer_dispatch", command_id))

    def defer_dispatch_in_order(self, command_ids: Sequence[UUID]) -> None:
        self.calls.append(("defer_dispatch_in_order", tuple(command_ids)))

    def defer_print_preparation(self, job_id: UUID) -> None:
        self.calls.append(("defer_print_preparation", job_id))

    def defer_start_next(self, device_id: UUID) -> None:
        self.calls.append(("defer_start_next", device_id))


def submit(
    database: Database,
    container: bootstrap.Container,
    sender: Person,
    data: dict[str, Any],
    *,
    dry_run: bool,
) -> tuple[review.Applied | review.Held, Recorder]:
    recorder = Recorder()
    text = yaml.safe_dump(data, sort_keys=False)
    with database.unit_of_work() as uow:
        outcome = review.submit(
            uow,
            parse_manifest(text, "manifest"),
            text,
            Principal(sender.user_id, "ada", frozenset({Role.ADMIN})),
            container.clock(),
            bootstrap.safety_context(container.settings),
            jobs=recorder,
            bus=recorder,
            dry_run=dry_run,
        )
        assert recorder.calls == [], "nothing runs before the commit"
    return outcome, recorder


def test_a_held_change_announces_its_event_then_delivers_the_approvers_notifications(
    database: Database,
    container: bootstrap.Container,
    demo_lab: dict[str, Any],  # noqa: F811
    people: dict[str, Person],  # noqa: F811
) -> None:
    outcome, recorder = submit(
        database, container, people["ada"], weakened(demo_lab), dry_run=False
    )
    assert isinstance(outcome, review.Held)
    assert outcome.notifications, "sam, the safety officer, is asked"
    assert recorder.calls == [
        ("publish", topics.safety(outcome.event.id)),
        *(("defer_notification", row.id) for row in outcome.notifications),
    ]


def test_a_dry_run_of_a_held_change_announces_and_defers_nothing(
    database: Database,
    container: bootstrap.Container,
    demo_lab: dict[str, Any],  # noqa: F811
    people: dict[str, Person],  # noqa: F811
) -> None:
    outcome, recorder = submit(database, container, people["ada"], weakened(demo_lab), dry_run=True)
    assert isinstance(outcome, review.Held)
    assert recorder.calls == []
    with database.unit_of_work() as session:
        assert session.scalars(select(SafetyEvent)).all() == []
