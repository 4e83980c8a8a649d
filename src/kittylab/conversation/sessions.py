"""Conversation session lifecycle: sessions idle past their TTL are removed.

Removing a session keeps every record that points at it. Commands, CAD jobs and telemetry
lose the link (``ON DELETE SET NULL``); routing decisions keep their ``conversation_id``
because that column deliberately has no foreign key (cost and audit outlive sessions).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import ConversationSession

logger = logging.getLogger(__name__)


def remove_inactive_sessions(session: Session, now: datetime, ttl: timedelta) -> int:
    """Delete sessions whose last message is older than ``now - ttl``; return how many.

    A session exactly ``ttl`` old is kept. Runs in the caller's unit of work.
    """
    removed = session.scalars(
        delete(ConversationSession)
        .where(ConversationSession.last_message_at < now - ttl)
        .returning(ConversationSession.id)
        .execution_options(synchronize_session=False)
    ).all()
    if removed:
        logger.info("removed %d inactive conversation sessions", len(removed))
    return len(removed)
