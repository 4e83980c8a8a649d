"""``kittylab simulate``: the demo lab's simulated devices as a process of their own, a
device on the bus like any other (issue 14).

It connects to the broker as the simulator's bus identity, learns which devices to
simulate from ``kitty/simulator/devices`` (published by ``kittylab serve``), takes their
commands, publishes their states, and serves its cameras' pictures on loopback
(``simulator.camera_port``). It never opens the database: the server's telemetry ingest
stores what it publishes.

``kittylab serve`` starts it as a child (``simulator_child``) with ``--exit-with-stdin``:
the child ends when its standard input closes, which happens however the server ends (a
``kill -9`` included), so no simulator outlives its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from dataclasses import replace

from kittylab import bootstrap_bus
from kittylab.adapters.bus.mqtt import MqttBus
from kittylab.config import Settings
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.clock import utcnow
from kittylab.safety.command_signature import CommandVerifier
from kittylab.simulator.cameras import CameraStudio, serve_cameras
from kittylab.simulator.devices import build_simulator
from kittylab.simulator.fleet import SimulatedFleet, run_fleet

log = logging.getLogger("kittylab.cli.simulate")  # not "__main__" when run with -m


def run_simulator(settings: Settings, *, command_key: str | None, exit_with_stdin: bool) -> None:
    """Run the simulated lab until SIGTERM or SIGINT (or, with ``exit_with_stdin``, until
    standard input closes)."""
    verifier = bootstrap_bus.simulator_verifier(settings, command_key)
    asyncio.run(_simulate(settings, verifier, exit_with_stdin))


async def _simulate(settings: Settings, verifier: CommandVerifier, exit_with_stdin: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if exit_with_stdin:
        _stop_when_stdin_closes(loop, stop)
    address = bootstrap_bus.broker_address(settings)
    # Always the simulator's own identity, even when the broker URL names a user.
    own = bootstrap_bus.bus_identities(settings).own(IdentityKind.SIMULATOR)
    bus = MqttBus(
        replace(address, username=own.username, password=own.password),
        settings.mqtt,
        role="simulator",
    )
    fleet = SimulatedFleet(build_simulator, verifier)
    fleet.attach(bus)
    sim = settings.simulator
    cameras: asyncio.Server | None = None
    if sim.camera_port:
        studio = CameraStudio(fleet, f"http://127.0.0.1:{sim.camera_port}", utcnow)
        try:
            cameras = await serve_cameras(studio, "127.0.0.1", sim.camera_port)
        except OSError as exc:
            # The lab runs on; only its cameras have no pictures.
            log.error("simulated cameras cannot serve on port %d: %s", sim.camera_port, exc)
            fleet.snapshotter = None
    tasks = [
        asyncio.create_task(bus.run(), name="mqtt-simulator"),
        asyncio.create_task(
            run_fleet(
                fleet,
                tick_seconds=sim.tick_seconds,
                report_every_seconds=sim.report_interval_seconds,
                speed=sim.speed,
            ),
            name="simulators",
        ),
    ]
    log.info("simulating the lab's devices on %s:%d", address.host, address.port)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if cameras is not None:
            cameras.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cameras.wait_closed(), 2)
        log.info("simulator stopped")


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` once standard input reaches its end (the parent is gone)."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m kittylab.cli.simulate``: what ``kittylab serve`` starts. The same as
    ``kittylab simulate`` without loading the rest of the command line (and with it every
    adapter), so the child stays small."""
    import argparse

    from pydantic import ValidationError

    from kittylab.domain.errors import KittyLabError
    from kittylab.observability import configure_logging

    parser = argparse.ArgumentParser(prog="kittylab simulate")
    parser.add_argument("--command-key", default=None)
    parser.add_argument("--exit-with-stdin", action="store_true")
    options = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    try:
        run_simulator(
            settings, command_key=options.command_key, exit_with_stdin=options.exit_with_stdin
        )
    except KittyLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
