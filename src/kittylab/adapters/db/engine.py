"""Engine and session factory. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from kittylab.adapters.db import change_signal  # noqa: F401 - every unit of work signals its changes
from kittylab.adapters.db.unit_of_work import UnitOfWork


def sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver whatever the URL's scheme says."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL in the plain form libpq and procrastinate accept."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 20, timeouts: bool = True) -> Engine:
    """An engine on ``url``. With ``timeouts`` (everything but migrations, which may
    legitimately run long), statements and lock waits are bounded."""
    options = "-c statement_timeout=30000 -c lock_timeout=5000" if timeouts else ""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={
            "connect_timeout": 10,
            "application_name": "kittylab",
            # No statement or lock wait may hang a request (or a job) indefinitely, and a
            # dead server is noticed by TCP keepalives instead of after minutes.
            "options": options,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )


class Database:
    """The engine plus a unit-of-work factory: one transaction per ``with`` block."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, class_=UnitOfWork, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Commit when the block ends normally, then run what was registered with
        ``uow.after_commit``; roll back (dropping those) when it raises. A use case may
        commit early (to keep a refusal's audit entry before raising): the follow-ups
        registered so far run then, and work after that runs in a new transaction,
        committed at the end as usual (``unit_of_work.UnitOfWork`` states the contract)."""
        with self._sessions() as uow:
            try:
                yield uow
                uow.commit()
            except BaseException:
                uow.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
