"""Alembic environment. Runs only through kittylab.adapters.db.migrate, which hands over an
open connection; there is no alembic.ini to keep in sync."""

from __future__ import annotations

from alembic import context

from kittylab.adapters.db.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
