"""The real Moonraker (PyPI ``moonraker``, installed by ``scripts/install-moonraker.sh``)
started as a subprocess against the protocol-level Klippy in ``klippy_peer``.

Authorization is on: the driver must send the API key. Only 127.0.0.2 is a trusted
client, so the test can fetch the key from there (as an operator would copy it from the
web UI) while the driver, connecting from 127.0.0.1, is held to the key.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
TRUSTED_ADDRESS = "127.0.0.2"


def install_moonraker() -> Path:
    """Run the repo's install script (idempotent, cached) and return the executable."""
    done = subprocess.run(
        [str(REPO / "scripts" / "install-moonraker.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/install-moonraker.sh failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MoonrakerProcess:
    def __init__(self, executable: Path, workdir: Path, klippy_socket: Path) -> None:
        self.executable = executable
        self.data = workdir / "moonraker-data"
        self.klippy_socket = klippy_socket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moonraker.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def gcodes(self) -> Path:
        return self.data / "gcodes"

    def prepare(self) -> None:
        (self.data / "config").mkdir(parents=True, exist_ok=True)
        self.gcodes.mkdir(parents=True, exist_ok=True)
        # Moonraker downloads usb.ids from the internet at start unless the file exists;
        # tests talk to loopback only.
        (self.data / "misc").mkdir(parents=True, exist_ok=True)
        (self.data / "misc" / "usb.ids").write_text("# not needed by the tests\n")
        (self.data / "config" / "moonraker.conf").write_text(
            "[server]\n"
            "host: 127.0.0.1\n"
            f"port: {self.port}\n"
            f"klippy_uds_address: {self.klippy_socket}\n"
            "\n"
            "[authorization]\n"
            "trusted_clients:\n"
            f"  {TRUSTED_ADDRESS}/32\n"
            "\n"
            "[announcements]\n"
            "# Never fetch the remote news feed: tests talk to loopback only.\n"
            "enable_moonlight: False\n"
        )

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self.executable), "-d", str(self.data), "-l", str(self.log)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moonraker exited:\n{self.log.read_text()[-3000:]}")
            try:
                with self._trusted() as client:
                    info = client.get("/server/info").json()["result"]
                last = f"klippy_state={info.get('klippy_state')}"
                if info.get("klippy_state") == "ready":
                    return
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moonraker not ready in {timeout}s ({last}):\n{self.log_tail()}")

    def api_key(self) -> str:
        with self._trusted() as client:
            return str(client.get("/access/api_key").json()["result"])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)

    def _trusted(self) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=TRUSTED_ADDRESS)
        return httpx.Client(base_url=self.url, transport=transport, timeout=5.0)
