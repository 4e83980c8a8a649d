"""Replies that close the loop (issue 16): a device command's reply says how it went.

Once a turn that sent a device command has committed, ``ReplyCloser.close`` waits up to
``conversations.reply_wait_seconds`` for the command's outcome message (written when the
command is decided: ``conversation.messages.record_outcome``) and answers with it ("Farm
lights are on at 30 %.", "CNC door did not lock: …"). Past the bound the reply says the
command is under way; the outcome follows as a later message of the conversation (its
events stream, ``GET /api/conversations/{id}/events``), never on the retained
``kitty/ctx/<id>`` topic. Nothing here writes: the stored history keeps the reply as it
was recorded and the outcome as its own message, so what this returns is only how the
person asking hears both at once.

The wait reads the database (a short query every ``POLL_SECONDS``), so it works whichever
process dispatches the command (the server's own workers or a ``kittylab worker``
elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.conversation import messages
from kittylab.conversation.query import Outcome, QueryResult
from kittylab.domain import command_outcome

POLL_SECONDS = 0.05


class ReplyCloser:
    def __init__(
        self,
        database: Database,
        wait_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.database = database
        self.wait_seconds = wait_seconds
        self._monotonic = monotonic
        self._sleep = sleep

    def close(self, result: QueryResult) -> QueryResult:
        """``result`` with its command's reply replaced by the outcome, or by "under way"
        once the bound has passed; unchanged for a turn that sent no command (a held
        hazardous one waits for people, not for the device, and keeps its reply)."""
        command = result.command
        if command is None or result.outcome != Outcome.COMMAND or not result.replies:
            return result
        deadline = self._monotonic() + self.wait_seconds
        while True:
            with self.database.unit_of_work() as session:
                outcome = messages.outcome_of(session, command.id)
                if outcome is not None or self._monotonic() >= deadline:
                    fresh = session.get(DeviceCommand, command.id, populate_existing=True)
                    name = session.scalar(
                        select(Device.display_name).where(Device.id == command.device_id)
                    )
                    if fresh is not None:
                        session.expunge(fresh)
                    break
            self._sleep(POLL_SECONDS)
        if outcome is not None:
            text = outcome.text
        else:
            text = command_outcome.under_way(
                command.intent,
                name or "the device",
                command.payload,
                f"command {str(command.id)[:8]}",
            )
        replies = [*result.replies[:-1], text]
        return replace(result, replies=replies, command=fresh or command)
