"""The telemetry benchmark's sensor side: one paho-mqtt client in its own process (so it
does not share the ingest's GIL) publishing small JSON readings as fast as it can, or at
a fixed rate. Kept apart from ``telemetry_bench.py`` so the spawned process imports only
paho, not KittyLab."""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import paho.mqtt.client as paho

METRICS = ("env/temperature", "env/humidity", "power/watts")


@dataclass(frozen=True)
class PublishPlan:
    host: str
    port: int
    devices: tuple[str, ...]
    events: int
    qos: int
    rate: float
    """Events per second; 0 publishes as fast as the socket takes them."""


@dataclass(frozen=True)
class Published:
    events: int
    first_at: float
    """``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on Linux)."""
    last_at: float
    """When the last message was written (QoS 0) or acknowledged (QoS 1)."""
    cpu_seconds: float


def topic_of(index: int, devices: tuple[str, ...]) -> str:
    device = devices[index % len(devices)]
    return f"kitty/telemetry/{device}/{METRICS[index // len(devices) % len(METRICS)]}"


def payload_of(index: int) -> bytes:
    return b'{"v":%d.%02d,"seq":%d}' % (20 + index % 7, index % 100, index)


def run(plan: PublishPlan, conn: Connection) -> None:
    """Connect, say ``ready``, wait for ``go``, publish, send back a ``Published``."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"bench-sensor-{time.monotonic_ns()}"
    )
    client.max_inflight_messages_set(0)  # no cap on unacknowledged QoS 1 messages
    client.max_queued_messages_set(0)
    client.connect(plan.host, plan.port, keepalive=60)
    while not client.is_connected():
        client.loop(0.05)
    conn.send("ready")
    assert conn.recv() == "go"
    topics = [topic_of(i, plan.devices) for i in range(len(plan.devices) * len(METRICS))]
    # No network thread: with none, paho writes each publish straight to the socket from
    # this thread; ``loop`` is called now and then for PUBACKs and keepalives.
    first_at = time.monotonic()
    cpu = time.process_time()
    info = None
    for index in range(plan.events):
        info = client.publish(topics[index % len(topics)], payload_of(index), qos=plan.qos)
        if index % 500 == 499:
            client.loop(0)
            if plan.rate:
                ahead = first_at + (index + 1) / plan.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    assert info is not None
    while not info.is_published() or client.want_write():
        client.loop(0.01)
    last_at = time.monotonic()
    client.disconnect()
    conn.send(Published(plan.events, first_at, last_at, time.process_time() - cpu))
