"""The simulator process of ``kittylab serve`` (issue 14): started with the server,
restarted if it ends, stopped with it.

The child is ``python -m kittylab.cli.simulate --exit-with-stdin`` with the lab's public
command key. Its standard input is a pipe from the server that the server never writes
to: however the server ends, ``kill -9`` included, the pipe closes and the child stops
(the CAD workers end the same way), so no simulator outlives its server. On an orderly
stop the server closes the pipe itself and waits ``STOP_SECONDS`` before terminating it.

The child gets the server's environment without ``KITTYLAB_DATABASE_URL``: it has no
database access, and needs none. A child that ends by itself is started again after
``simulator.restart_delay_seconds``, doubling (up to ``MAX_RESTART_DELAY_SECONDS``) while
it keeps ending within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time

from kittylab.config import Settings

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0
MAX_RESTART_DELAY_SECONDS = 60.0
HEALTHY_AFTER_SECONDS = 60.0


def command(public_key: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kittylab.cli.simulate",
        "--exit-with-stdin",
        "--command-key",
        public_key,
    ]


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KITTYLAB_DATABASE_URL"}
    # What the server was given, whichever way it was given it.
    env["KITTYLAB_DATA_DIR"] = str(settings.data_dir)
    port = settings.simulator.camera_port
    env["KITTYLAB_SIMULATOR__CAMERA_PORT"] = str(port or 0)
    return env


def with_camera_port(settings: Settings) -> Settings:
    """``settings`` with a free loopback port for the simulator's cameras when it is 0
    (pick one): the server fetches simulated cameras' pictures there, and the child is
    told it."""
    sim = settings.simulator
    if not sim.enabled or sim.camera_port != 0:
        return settings
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return settings.model_copy(update={"simulator": sim.model_copy(update={"camera_port": port})})


async def supervise_simulator(settings: Settings, public_key: str) -> None:
    """Keep one simulator process running until cancelled, then stop it."""
    argv, env = command(public_key), environment(settings)
    first_delay = settings.simulator.restart_delay_seconds
    delay = first_delay
    while True:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, env=env
        )
        log.info("simulator process %d started", process.pid)
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await _stop(process)
            raise
        ran = time.monotonic() - started
        delay = first_delay if ran >= HEALTHY_AFTER_SECONDS else delay
        log.warning(
            "simulator process %d ended (exit %s) after %.1f s; restarting in %.1f s",
            process.pid,
            code,
            ran,
            delay,
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Close its input (it stops by itself), then terminate, then kill."""
    if process.stdin is not None:
        process.stdin.close()
    for escalate in (None, process.terminate, process.kill):
        if escalate is not None:
            with contextlib.suppress(ProcessLookupError):
                escalate()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), STOP_SECONDS)
        except TimeoutError:
            continue
        log.info("simulator process %d stopped", process.pid)
        return
