"""Mosquitto's password file and ACL file from the lab's bus identities (issue 13).

The same table as the embedded broker (``domain/bus_acl``), in Mosquitto 2's file formats:
``username:$7$…`` lines (PBKDF2-SHA512, what ``mosquitto_passwd`` writes) and an
``acl_file`` in which every user gets exactly its ``topic write``/``topic read`` lines
(Mosquitto denies whatever an ACL file does not grant). With ``allow_anonymous false``,
anyone else is refused at connect. With a certificate, ``kittylab.conf`` also declares a
TLS listener (``TlsListener``), so the LAN reaches the broker over ``mqtts://`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kittylab.adapters.bus.credentials import Identities
from kittylab.adapters.tls import ServerCertificate
from kittylab.domain import bus_acl


def password_lines(identities: Identities) -> str:
    return "".join(
        f"{name}:{entry.password_hash}\n" for name, entry in sorted(identities.entries.items())
    )


def acl_lines(identities: Identities) -> str:
    out = ["# Written by `kittylab mqtt config` from the lab's bus identities; do not edit.\n"]
    for name, entry in sorted(identities.entries.items()):
        identity = entry.identity
        out.append(f"\n# {identity.kind.value}\nuser {name}\n")
        out.extend(f"topic write {p}\n" for p in bus_acl.publish_patterns(identity))
        # Mosquitto checks a subscription and then every delivered message against the
        # read lines, so the simulator's ``cmd`` wildcard is granted one device at a time.
        out.extend(f"topic read {p}\n" for p in bus_acl.receive_patterns(identity))
    return "".join(out)


@dataclass(frozen=True)
class TlsListener:
    """A TLS listener for ``kittylab.conf``: the broker presents ``certificate`` (the lab's
    from ``kittylab tls init``, or any other) on ``port``, on every interface or ``bind``."""

    certificate: ServerCertificate
    port: int = 8883
    bind: str | None = None

    def lines(self) -> str:
        listener = f"listener {self.port} {self.bind}" if self.bind else f"listener {self.port}"
        return (
            "\n# TLS: clients reach this broker over mqtts:// and verify its certificate with\n"
            "# the lab CA. Keep any plain listener on 127.0.0.1 (or remove it).\n"
            f"{listener}\n"
            f"certfile {self.certificate.cert}\n"
            f"keyfile {self.certificate.key}\n"
            "tls_version tlsv1.2\n"
        )


@dataclass(frozen=True)
class MosquittoFiles:
    password_file: Path
    acl_file: Path
    config: Path


def write_config(
    identities: Identities, directory: Path, tls: TlsListener | None = None
) -> MosquittoFiles:
    """Write ``passwd``, ``acl`` and ``kittylab.conf`` (to include from mosquitto.conf)
    into ``directory``; the password file with mode 0600. With ``tls``, ``kittylab.conf``
    also declares that TLS listener."""
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "passwd"
    acl_file = directory / "acl"
    config = directory / "kittylab.conf"
    _write_private(password_file, password_lines(identities))
    _write_private(acl_file, acl_lines(identities))
    config.write_text(
        "# Include from mosquitto.conf: KittyLab's identities and topic rights.\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {password_file}\n"
        f"acl_file {acl_file}\n" + (tls.lines() if tls is not None else "")
    )
    return MosquittoFiles(password_file, acl_file, config)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
