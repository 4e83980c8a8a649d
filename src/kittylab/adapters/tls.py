"""The lab's own certificate authority and the server certificate it signs (issue 13).

``kittylab tls init`` makes, in ``<data_dir>/tls``:

- ``ca.pem``: the lab CA's certificate, to install on the lab's tablets and laptops (and
  to give Mosquitto's clients); ``ca-key.pem``, its key (mode 0600), which never leaves the
  server host;
- ``server.pem`` and ``server-key.pem`` (mode 0600): a certificate for the server's host
  names and addresses, signed by the CA, which ``kittylab serve`` (HTTPS) and the MQTT
  brokers (``mqtts://``) present.

Running it again keeps the CA (tablets keep trusting it) and issues a new server
certificate for the names given; ``new_ca`` replaces both. Certificates follow what
browsers require of a private CA's server certificates: names in subjectAltName,
``serverAuth`` extended key usage, at most 825 days (Apple's limit), ECDSA P-256 / SHA-256.

Whoever holds ``ca-key.pem`` can issue certificates that the devices trusting the CA
accept for any name: the key is written 0600 in a 0700 folder; guard it like the database.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kittylab.domain.errors import KittyLabError, ValidationFailed
from kittylab.domain.networks import is_loopback_host

CA_DAYS = 3650
SERVER_DAYS = 825
"""Apple platforms refuse a server certificate valid longer than this, even from a CA the
user installed."""

_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


class TlsRequired(KittyLabError):
    """A listener or a connection beyond loopback would carry tokens or bus passwords in
    the clear, and nobody said that was intended."""


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate and its private key, as files (what uvicorn, amqtt, Mosquitto take)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class LabTls:
    """The files of ``kittylab tls init`` in ``directory`` (``<data_dir>/tls``)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server(self) -> ServerCertificate:
        return ServerCertificate(self.directory / "server.pem", self.directory / "server-key.pem")

    @property
    def has_ca(self) -> bool:
        return self.ca_cert.is_file()

    @property
    def has_server_certificate(self) -> bool:
        return self.server.cert.is_file() and self.server.key.is_file()


@dataclass(frozen=True)
class Issued:
    tls: LabTls
    names: tuple[str, ...]
    new_ca: bool
    ca_fingerprint: str
    """SHA-256 of the CA certificate, colon-separated: what a tablet shows before trusting it."""
    not_after: dt.datetime


def lab_tls(data_dir: Path) -> LabTls:
    return LabTls(data_dir / "tls")


def default_names() -> list[str]:
    """This machine's names: loopback (the server's own clients use it), its host name
    and, for a bare one, its mDNS ``.local`` name."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname().strip().lower()
    if host and host != "localhost":
        names.append(host)
        if "." not in host:
            names.append(f"{host}.local")
    return names


def subject_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """Each name as an IP address or a DNS name; ``ValidationFailed`` for anything else."""
    out: list[x509.GeneralName] = []
    for raw in names:
        name = raw.strip().strip("[]").lower()
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _DNS_NAME.fullmatch(name):
            raise ValidationFailed("host", f"{raw!r} is neither an IP address nor a host name")
        out.append(x509.DNSName(name))
    return list(dict.fromkeys(out))  # in order, once each


def init(
    tls: LabTls, names: Sequence[str], *, new_ca: bool = False, now: dt.datetime | None = None
) -> Issued:
    """Make the CA (unless one exists and ``new_ca`` is false) and a server certificate
    for ``names``; see the module doc."""
    sans = subject_names(names)
    if not sans:
        raise ValidationFailed("host", "give at least one host name or address")
    now = now or dt.datetime.now(dt.UTC)
    tls.directory.mkdir(parents=True, exist_ok=True)
    tls.directory.chmod(0o700)
    made_ca = new_ca or not (tls.has_ca and tls.ca_key.is_file())
    if made_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write_private(tls.ca_key, _key_pem(ca_key))
        _write_public(tls.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValidationFailed("tls", f"{tls.ca_key} is not the lab CA's key")
        ca_key = loaded
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, sans, ca_cert, ca_key, now)
    _write_private(tls.server.key, _key_pem(server_key))
    _write_public(tls.server.cert, server_cert.public_bytes(serialization.Encoding.PEM))
    return Issued(
        tls=tls,
        names=tuple(_name_text(n) for n in sans),
        new_ca=made_ca,
        ca_fingerprint=ca_cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        not_after=server_cert.not_valid_after_utc,
    )


def listener_certificate(
    host: str,
    *,
    given: ServerCertificate | None,
    lab: LabTls,
    allow_plain: bool,
    refusal: str,
) -> ServerCertificate | None:
    """The certificate a listener on ``host`` presents: ``given``; else, beyond loopback,
    the lab's from ``kittylab tls init``. ``None``: plain (on loopback, or beyond it when
    ``allow_plain``). ``TlsRequired(refusal)`` beyond loopback with neither."""
    if given is not None:
        return given
    if is_loopback_host(host):
        return None
    if lab.has_server_certificate:
        return lab.server
    if allow_plain:
        return None
    raise TlsRequired(refusal)


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client TLS context that verifies the server's certificate and name against the
    system's CAs and, when given, ``ca_file`` (the lab CA) as well."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    host = socket.gethostname() or "lab"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KittyLab"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"KittyLab lab CA ({host})"[:64]),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        # path_length 0: the CA signs server certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _name_text(sans[0])[:64])])
    not_after = min(
        now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc - dt.timedelta(days=1)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name_text(name: x509.GeneralName) -> str:
    return str(name.value)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Written 0600 from the start (never readable by others, not even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)
