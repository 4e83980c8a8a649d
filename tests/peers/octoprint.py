"""A real OctoPrint (1.11.8, with its bundled virtual printer) for driver tests.

``scripts/octoprint-peer.sh`` installs it once in its own venv (it pins old Flask and
psutil<7, so it never shares the project's); ``start`` prepares a throwaway base directory
— first-run wizards done, access control on with one admin user whose API key is set,
network-calling plugins off, the virtual printer enabled, and a system shutdown command
that only creates ``shutdown_marker`` (so a test can tell whether anything reached
``/api/system/commands/core/shutdown``) — runs ``octoprint serve`` on a free loopback port
and waits until its API answers. Anything that goes wrong raises
``PeerFailed`` with the end of OctoPrint's log: tests fail loudly, they never skip.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "scripts" / "octoprint-peer.sh"
USERNAME = "kittylab"
SHUTDOWN_MARKER = "shutdown-ran"

# Plugins that would call the internet (update checks, announcements, tracking, plugin
# repository, zeroconf) or nag on first run; none matters to the REST API under test.
_DISABLED_PLUGINS = [
    "achievements",
    "announcements",
    "backup",
    "discovery",
    "errortracking",
    "firmware_check",
    "pi_support",
    "pluginmanager",
    "softwareupdate",
    "tracking",
]


class PeerFailed(RuntimeError):
    """OctoPrint could not be installed or started."""


@dataclass
class OctoPrintPeer:
    url: str
    api_key: str
    basedir: Path
    executable: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def shutdown_marker(self) -> Path:
        """The file OctoPrint's "shut down the system" command creates, instead of shutting
        anything down."""
        return self.basedir / SHUTDOWN_MARKER

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.basedir, lines)


def install() -> Path:
    """The ``octoprint`` executable, installing it first when needed."""
    done = subprocess.run(
        [str(INSTALLER)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise PeerFailed(f"{INSTALLER} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    executable = Path(done.stdout.strip().splitlines()[-1])
    if not os.access(executable, os.X_OK):
        raise PeerFailed(f"{INSTALLER} did not produce an executable ({executable})")
    return executable


def start(basedir: Path, *, startup_timeout: float = 90.0) -> OctoPrintPeer:
    executable = install()
    api_key = secrets.token_hex(16)
    _prepare(executable, basedir, api_key)
    port = _free_port()
    peer = OctoPrintPeer(f"http://127.0.0.1:{port}", api_key, basedir, executable, port)
    _launch(peer, startup_timeout)
    return peer


def restart(peer: OctoPrintPeer, *, startup_timeout: float = 90.0) -> None:
    """Stop OctoPrint and start it again on the same base directory and port (what a
    reboot of the OctoPrint host looks like to a client)."""
    stop(peer)
    _launch(peer, startup_timeout)


def _launch(peer: OctoPrintPeer, startup_timeout: float) -> None:
    with (peer.basedir / "serve.log").open("ab") as log:
        peer.process = subprocess.Popen(
            [
                str(peer.executable),
                "serve",
                "--iknowwhatimdoing",
                "--basedir",
                str(peer.basedir),
                "--host",
                "127.0.0.1",
                "--port",
                str(peer.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + startup_timeout
    while True:
        if peer.process.poll() is not None:
            raise PeerFailed(
                f"octoprint serve exited ({peer.process.returncode}):\n{peer.log_tail()}"
            )
        try:
            answer = httpx.get(
                f"{peer.url}/api/version", headers={"X-Api-Key": peer.api_key}, timeout=2
            )
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(peer)
            raise PeerFailed(
                f"OctoPrint did not answer within {startup_timeout:g} s:\n{peer.log_tail()}"
            )
        time.sleep(0.25)


def stop(peer: OctoPrintPeer) -> None:
    if peer.process is None or peer.process.poll() is not None:
        return
    peer.process.terminate()
    try:
        peer.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        peer.process.kill()
        peer.process.wait(timeout=15)


def _prepare(executable: Path, basedir: Path, api_key: str) -> None:
    basedir.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {
            "firstRun": False,
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
            "commands": {"systemShutdownCommand": f"touch {basedir / SHUTDOWN_MARKER}"},
        },
        "serial": {"autoconnect": False},
        "plugins": {"_disabled": _DISABLED_PLUGINS, "virtual_printer": {"enabled": True}},
    }
    (basedir / "config.yaml").write_text(yaml.safe_dump(config))
    # The user comes from OctoPrint's own CLI (its password hashing is its business); the
    # user's API key is then set in users.yaml, where OctoPrint keeps it.
    done = subprocess.run(
        [
            str(executable),
            "--basedir",
            str(basedir),
            "user",
            "add",
            USERNAME,
            "--password",
            secrets.token_hex(16),
            "--admin",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise PeerFailed(f"octoprint user add failed:\n{done.stdout}\n{done.stderr}")
    users_file = basedir / "users.yaml"
    users = yaml.safe_load(users_file.read_text())
    users[USERNAME]["apikey"] = api_key
    users_file.write_text(yaml.safe_dump(users))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(basedir: Path, lines: int) -> str:
    parts = []
    for log in (basedir / "serve.log", basedir / "logs" / "octoprint.log"):
        if log.exists():
            parts.append(
                f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            )
    return "\n".join(parts) or "(no log)"
