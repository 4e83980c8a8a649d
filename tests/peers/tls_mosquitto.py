"""A real Mosquitto broker with a TLS listener and password auth, started by the tests.

A Bambu Lab printer in LAN mode runs its own MQTT broker on port 8883 with a certificate
issued by the vendor's CA to ``CN=<serial>``, and accepts user ``bblp`` with the LAN access
code as password. This module reproduces that with the Debian ``mosquitto`` binary: a CA
generated with ``cryptography``, a server certificate whose only name is the printer's
serial (no subjectAltName, like the printer's), and a ``mosquitto_passwd`` file.

``scripts/install-mosquitto.sh`` installs the binary; when it is missing the fixture fails
with that hint instead of skipping.
"""

from __future__ import annotations

import datetime as dt
import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

INSTALL_HINT = "run scripts/install-mosquitto.sh (apt-get install -y mosquitto)"


def find_binary(name: str) -> str:
    """The path of a Mosquitto tool; Debian puts the broker in /usr/sbin."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its PEM file and the key that signs with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_authority(directory: Path, common_name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem_path = directory / f"{common_name.replace(' ', '_')}.pem"
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(cert, key, pem_path)


def issue_server_certificate(
    authority: Authority, common_name: str, directory: Path
) -> tuple[Path, Path]:
    """A server certificate for ``common_name`` (subject CN only, as a printer's has);
    returns (certificate path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(authority.key, hashes.SHA256())
    )
    cert_path = directory / f"{common_name}.crt"
    key_path = directory / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class TlsMosquitto:
    """A running broker: where it listens, the CA that signed it, and how to stop it."""

    host: str
    port: int
    ca_file: Path
    cert_file: Path  # the server certificate (CN = server_name) and its key, for other
    key_file: Path  # TLS peers that stand for the same printer
    server_name: str
    username: str
    password: str
    directory: Path
    binary: str
    config: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """(Re)start the broker on its port and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr
                err = stderr.read().decode(errors="replace") if stderr else ""
                raise RuntimeError(
                    f"mosquitto exited ({self.process.returncode}): {err}{self.log()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 15 s: {self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_tls_mosquitto(
    directory: Path, *, server_name: str, username: str, password: str
) -> TlsMosquitto:
    """Start Mosquitto on a free loopback port with TLS only (no plain listener) and
    password auth; wait until it accepts connections. The caller must ``stop()`` it."""
    broker = find_binary("mosquitto")
    passwd = find_binary("mosquitto_passwd")
    directory.mkdir(parents=True, exist_ok=True)
    authority = make_authority(directory, "Test Printer CA")
    cert_path, key_path = issue_server_certificate(authority, server_name, directory)
    password_file = directory / "passwd"
    subprocess.run(
        [passwd, "-b", "-c", str(password_file), username, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    password_file.chmod(0o600)
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                # Run as whoever started the tests: as root, Mosquitto would otherwise
                # switch to user "mosquitto", which cannot read these private files.
                f"user {getpass.getuser()}",
                "persistence false",
                "set_tcp_nodelay true",
                f"log_dest file {directory / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                f"listener {port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {password_file}",
                f"cafile {authority.pem_path}",
                f"certfile {cert_path}",
                f"keyfile {key_path}",
                "",
            ]
        )
    )
    server = TlsMosquitto(
        host="127.0.0.1",
        port=port,
        ca_file=authority.pem_path,
        cert_file=cert_path,
        key_file=key_path,
        server_name=server_name,
        username=username,
        password=password,
        directory=directory,
        binary=broker,
        config=conf,
    )
    server.start()
    return server
