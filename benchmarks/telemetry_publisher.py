"""The telemetry benchmark's sensors: one process (so it does not share the ingest's GIL)
publishing small JSON readings over MQTT 3.1.1, flat out or at a fixed rate.

It writes ready-made PUBLISH packets straight to the socket, many per ``send``: real
sensors are other machines, and on this 2-core box every µs a Python MQTT client spent
per message (paho costs about 15) would be taken from the ingest being measured. Kept
apart from ``telemetry_bench.py`` so the spawned process imports nothing of KittyLab.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

METRICS = ("env/temperature", "env/humidity", "power/watts")
CHUNK = 200
"""Messages per ``send`` (and per pacing step)."""


@dataclass(frozen=True)
class PublishPlan:
    host: str
    port: int
    devices: tuple[str, ...]
    events: int
    qos: int
    rate: float
    """Events per second; 0 publishes as fast as the broker takes them."""


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


def _packet(kind: int, body: bytes) -> bytes:
    """A fixed header (type and flags, then the remaining length as a varint) and body."""
    size, length = len(body), bytearray()
    while True:
        byte, size = size % 128, size // 128
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes([kind]) + bytes(length) + body


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _publish(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    ident = struct.pack("!H", packet_id) if qos else b""
    return _packet(0x30 | qos << 1, _string(topic.encode()) + ident + payload)


def _connect(plan: PublishPlan) -> socket.socket:
    sock = socket.create_connection((plan.host, plan.port), timeout=10)
    client_id = f"bench-sensor-{time.monotonic_ns()}".encode()
    # Protocol "MQTT" level 4 (3.1.1), clean session, keepalive 600 s.
    sock.sendall(_packet(0x10, _string(b"MQTT") + b"\x04\x02" + b"\x02\x58" + _string(client_id)))
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"the broker refused the sensor: {connack!r}")
    return sock


def run(plan: PublishPlan, conn: Connection) -> None:
    """Connect, say ``ready``, wait for ``go``, publish, send back a ``Published``."""
    sock = _connect(plan)
    conn.send("ready")
    assert conn.recv() == "go"
    acks = 0
    pending = b""
    first_at = time.monotonic()
    cpu = time.process_time()
    for start in range(0, plan.events, CHUNK):
        chunk = b"".join(
            _publish(topic_of(i, plan.devices), payload_of(i), plan.qos, i % 65535 + 1)
            for i in range(start, min(start + CHUNK, plan.events))
        )
        sock.sendall(chunk)
        if plan.qos:
            acks, pending = _read_acks(sock, pending, acks, wait=False)
        if plan.rate:
            ahead = first_at + (start + CHUNK) / plan.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    while plan.qos and acks < plan.events:
        acks, pending = _read_acks(sock, pending, acks, wait=True)
    last_at = time.monotonic()
    cpu = time.process_time() - cpu
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    conn.send(Published(plan.events, first_at, last_at, cpu))


def _read_acks(sock: socket.socket, pending: bytes, acks: int, *, wait: bool) -> tuple[int, bytes]:
    """Count the PUBACKs (4 bytes each: 0x40, 2, packet id) that have arrived."""
    sock.setblocking(wait)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return acks, pending
    finally:
        sock.setblocking(True)
    if not data:
        raise ConnectionError("the broker closed the sensor's connection")
    data = pending + data
    whole = len(data) - len(data) % 4
    return acks + whole // 4, data[whole:]
