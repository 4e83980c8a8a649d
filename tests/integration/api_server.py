"""The app served by a real uvicorn server on a thread, for tests that need a real socket
(raw HTTP, a CLI talking to a URL)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` on a free port of 127.0.0.1 until the block ends; yields the port.
    Fails the test when the server has not started within 10 s."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    try:
        port: int = sock.getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
