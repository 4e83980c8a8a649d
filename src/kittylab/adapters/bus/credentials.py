"""The lab's bus identities and their credentials, kept in one file in the data dir (issue 13).

The file (``<data_dir>/mqtt/identities.json``, mode 0600, replaced atomically) lists every
identity the brokers accept: its username, kind (``domain/bus_acl.IdentityKind``), the
devices it stands for, and a PBKDF2-SHA512 hash of its password in Mosquitto's ``$7$``
format, so the same line goes into a Mosquitto password file. KittyLab's own identities
(the service, its workers, the simulator) also keep their password here, since KittyLab
must present it; a real device's or a detector's password is shown once when issued and
only its hash is kept.

Passwords are 32 random bytes (URL-safe base64): with that much entropy the hash's
iteration count protects nothing, and a cheap hash keeps connects fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kittylab.domain.bus_acl import BusIdentity, IdentityKind
from kittylab.domain.devices import validate_external_id
from kittylab.domain.errors import ValidationFailed

ITERATIONS = 1000
_SALT_BYTES = 12  # what mosquitto_passwd uses
SERVICE_USERNAME = "kittylab-service"
WORKER_USERNAME = "kittylab-worker"
SIMULATOR_USERNAME = "kittylab-simulator"
_OWN = {
    IdentityKind.SERVICE: SERVICE_USERNAME,
    IdentityKind.WORKER: WORKER_USERNAME,
    IdentityKind.SIMULATOR: SIMULATOR_USERNAME,
}


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``$7$<iterations>$<salt>$<hash>`` (base64): PBKDF2-HMAC-SHA512 as Mosquitto 2 reads it."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Constant-time check of ``password`` against a ``$7$`` hash; False for anything else."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if not 1 <= iterations <= 1_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def new_password() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Entry:
    """One identity as the file keeps it."""

    identity: BusIdentity
    password_hash: str
    password: str | None = None
    """Kept only for KittyLab's own identities, which must present it."""


@dataclass(frozen=True)
class Credential:
    username: str
    password: str


class Identities:
    """The identities file: read, changed, written back whole."""

    def __init__(self, path: Path, entries: Mapping[str, Entry] | None = None) -> None:
        self.path = path
        self.entries: dict[str, Entry] = dict(entries or {})

    @classmethod
    def load(cls, path: Path) -> Identities:
        """The file's identities; none when it does not exist yet."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise ValidationFailed("mqtt.identities_file", f"cannot be read: {exc}") from exc
        entries: dict[str, Entry] = {}
        for item in raw.get("identities", []):
            identity = BusIdentity(
                str(item["username"]),
                IdentityKind(item["kind"]),
                frozenset(str(d) for d in item.get("devices", [])),
            )
            entries[identity.username] = Entry(identity, str(item["hash"]), item.get("password"))
        return cls(path, entries)

    def save(self) -> None:
        """Write the file with mode 0600, atomically: a broker reading it meanwhile sees the
        old or the new file, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = json.dumps({"identities": [_to_json(e) for e in self.entries.values()]}, indent=2)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def authenticate(self, username: str | None, password: str | None) -> BusIdentity | None:
        """The identity these credentials prove, or None."""
        entry = self.entries.get(username) if username else None
        if entry is None or password is None:
            return None
        return entry.identity if verify_password(password, entry.password_hash) else None

    def own(self, kind: IdentityKind) -> Credential:
        """The credential of one of KittyLab's own identities (see ``ensure_own``)."""
        entry = self.entries.get(_OWN[kind])
        if entry is None or entry.password is None:
            raise ValidationFailed(
                "mqtt.identities_file", f"has no {kind.value} credential: run kittylab serve once"
            )
        return Credential(entry.identity.username, entry.password)

    def ensure_own(self, simulated_devices: Iterable[str]) -> bool:
        """Create the service, worker and simulator identities that are missing, and let the
        simulator act for exactly ``simulated_devices``. Returns whether anything changed
        (the caller saves)."""
        changed = False
        devices = frozenset(simulated_devices)
        for kind, username in _OWN.items():
            wanted = devices if kind is IdentityKind.SIMULATOR else frozenset()
            entry = self.entries.get(username)
            if entry is None or entry.password is None:
                password = new_password()
                identity = BusIdentity(username, kind, wanted)
                self.entries[username] = Entry(identity, hash_password(password), password)
                changed = True
            elif entry.identity.devices != wanted:
                identity = replace(entry.identity, devices=wanted)
                self.entries[username] = replace(entry, identity=identity)
                changed = True
        return changed

    def issue_device(self, external_id: str) -> Credential:
        """A new password for one device (replacing any earlier one); only its hash is kept."""
        external_id = validate_external_id(external_id)
        return self._issue(
            BusIdentity(f"device-{external_id}", IdentityKind.DEVICE, frozenset({external_id}))
        )

    def issue_detector(self, name: str) -> Credential:
        if not name or any(c in name for c in ":/#+ \t\n"):
            raise ValidationFailed("name", "must be a non-empty name without ':', '/', '#', '+'")
        return self._issue(BusIdentity(f"detector-{name}", IdentityKind.DETECTOR))

    def _issue(self, identity: BusIdentity) -> Credential:
        password = new_password()
        self.entries[identity.username] = Entry(identity, hash_password(password))
        return Credential(identity.username, password)


def _to_json(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "username": entry.identity.username,
        "kind": entry.identity.kind.value,
        "devices": sorted(entry.identity.devices),
        "hash": entry.password_hash,
    }
    if entry.password is not None:
        item["password"] = entry.password
    return item
