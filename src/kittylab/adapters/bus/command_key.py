"""The lab's command-signing key, kept in the data dir (issue 13).

``<data_dir>/mqtt/command-signing.key``: an Ed25519 private key (PEM PKCS#8), created on
first use with mode 0600 and never replaced, since every verifying device holds its public
half. ``command-signing.pub`` beside it holds the public key as ``ed25519:<base64>``, the
form firmware is given (``kittylab mqtt command-key`` prints it).

Processes that send commands (``kittylab serve`` and every ``kittylab worker``) need the
same key: a worker on another machine gets a copy of the file, as it gets the identities
file, or ``KITTYLAB_MQTT__COMMAND_KEY_FILE`` pointing at one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kittylab.domain.errors import ValidationFailed
from kittylab.safety.command_signature import public_key_text

FIELD = "mqtt.command_key_file"


def public_key_file(key_file: Path) -> Path:
    return key_file.with_suffix(".pub")


def load_or_create(key_file: Path) -> Ed25519PrivateKey:
    """The key in ``key_file``, created (mode 0600) when there is none yet. Two processes
    starting at once end up with the same key: the file is linked into place only if it
    does not exist, and the loser reads the winner's."""
    try:
        return _load(key_file)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = key_file.with_name(f".{key_file.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, key_file)
    finally:
        temporary.unlink(missing_ok=True)
    key = _load(key_file)
    _write_public(key_file, key)
    return key


def _load(key_file: Path) -> Ed25519PrivateKey:
    try:
        data = key_file.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValidationFailed(FIELD, f"{key_file} cannot be read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError):
        raise ValidationFailed(FIELD, f"{key_file} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationFailed(FIELD, f"{key_file} must hold an Ed25519 key")
    return key


def _write_public(key_file: Path, key: Ed25519PrivateKey) -> None:
    path = public_key_file(key_file)
    text = public_key_text(key.public_key()) + "\n"
    with contextlib.suppress(OSError):  # a read-only copy on a worker: the .pub is optional
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
