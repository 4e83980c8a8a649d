"""The conversation's memory on the turn (issue 16), as ``QueryService``'s ``TurnHooks``:
each turn's words and replies are stored in the transaction that records its decision
(``messages.record_turn``), and a device command's reply waits briefly for its outcome
(``follow_up.ReplyCloser``) once the turn has committed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.conversation import messages
from kittylab.conversation.follow_up import ReplyCloser
from kittylab.conversation.query import EMPTY_INPUT_MARKER, QueryRequest, QueryResult
from kittylab.domain.principal import Principal


class TurnMemory:
    def __init__(self, closer: ReplyCloser | None, clock: Callable[[], datetime]) -> None:
        self.closer = closer
        self.clock = clock

    def recorded(
        self, session: UnitOfWork, caller: Principal, request: QueryRequest, result: QueryResult
    ) -> None:
        messages.record_turn(
            session,
            conversation_id=result.conversation_id,
            author_id=caller.user_id,
            channel=request.channel,
            request_id=result.request_id,
            text=request.text if request.text.strip() else EMPTY_INPUT_MARKER,
            replies=result.replies,
            command_id=result.command.id if result.command is not None else None,
            now=self.clock(),
            details={
                "outcome": result.outcome,
                "intent": result.intent,
                "device": result.device,
                "tier": result.tier.value,
                "decision_id": str(result.decision_id),
            },
        )

    def answered(self, result: QueryResult) -> QueryResult:
        return self.closer.close(result) if self.closer is not None else result
