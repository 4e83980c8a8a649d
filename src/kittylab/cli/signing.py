"""Signing an approval on the approver's machine (``kittylab approve --key FILE``).

- An OpenSSH private key (``ssh-keygen -t ed25519``, ``-t ecdsa``, or a FIDO2
  ``-t ed25519-sk`` / ``-t ecdsa-sk`` key handle) is signed by ``ssh-keygen -Y sign -n
  kittylab``: it asks for the passphrase and for the touch of a hardware key on the
  terminal, and KittyLab never sees the private key.
- A PEM PKCS#8 Ed25519 private key, or ``ed25519-private:<base64 of the 32-byte seed>``,
  is signed here with ``cryptography`` (the raw Ed25519 form).

The server checks both with ``kittylab.safety.signatures.verify``.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kittylab.domain.errors import KittyLabError
from kittylab.safety.approval_payload import SSH_NAMESPACE

# Long enough to type a passphrase and find the hardware key to touch.
SSH_KEYGEN_TIMEOUT_SECONDS = 120.0
MAX_KEY_FILE_BYTES = 64 * 1024


class SigningFailed(KittyLabError):
    """The approval could not be signed here; the message says why and what to do."""


def sign(
    key_file: Path,
    message: bytes,
    *,
    ssh_keygen: str = "ssh-keygen",
    namespace: str = SSH_NAMESPACE,
) -> str:
    """``message`` signed with the private key in ``key_file``: an armored SSH signature
    for OpenSSH keys (made for ``namespace``: approvals by default), base64 of the raw
    Ed25519 signature otherwise."""
    text = _read(key_file)
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        return _ssh_keygen_sign(key_file, message, ssh_keygen, namespace)
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text:
        raise SigningFailed(
            f"{key_file}: encrypted PEM keys are not supported; "
            "use an OpenSSH key with a passphrase (ssh-keygen -t ed25519)"
        )
    if "-----BEGIN PRIVATE KEY-----" in text:
        return _raw_signature(_pem_key(key_file, text), message)
    stripped = text.strip()
    if stripped.startswith("ed25519-private:"):
        return _raw_signature(_seed_key(key_file, stripped.split(":", 1)[1].strip()), message)
    if stripped.startswith(("ssh-", "sk-", "ecdsa-", "ed25519:", "-----BEGIN PUBLIC KEY")):
        raise SigningFailed(f"{key_file} is a public key; give the private key file to sign")
    raise SigningFailed(
        f"{key_file} is not a private key KittyLab can sign with (an OpenSSH private key, "
        "a PEM Ed25519 private key, or 'ed25519-private:<base64 seed>')"
    )


def _read(key_file: Path) -> str:
    try:
        size = key_file.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise SigningFailed(f"{key_file} is {size} bytes; that is not a key file")
        return key_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SigningFailed(f"cannot read the key file {key_file}: {exc.strerror}") from None


def public_key_of(key_file: Path) -> str:
    """The public key to enrol for the private key in ``key_file``: the ``.pub`` file
    beside an OpenSSH private key (as ssh-keygen writes it), computed for an Ed25519 PEM or
    seed file (``ed25519:<base64>``)."""
    text = _read(key_file)
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        beside = key_file.with_name(key_file.name + ".pub")
        if not beside.exists():
            raise SigningFailed(
                f"{beside} is missing: give the public key with --public "
                f"(ssh-keygen -y -f {key_file} prints it)"
            )
        return _read(beside).strip()
    if "-----BEGIN PRIVATE KEY-----" in text:
        key = _pem_key(key_file, text)
    elif text.strip().startswith("ed25519-private:"):
        key = _seed_key(key_file, text.strip().split(":", 1)[1].strip())
    else:
        # sign() says precisely what is wrong with the file.
        sign(key_file, b"")
        raise SigningFailed(f"{key_file} is not a private key KittyLab can enrol")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode("ascii")


def _ssh_keygen_sign(key_file: Path, message: bytes, ssh_keygen: str, namespace: str) -> str:
    program = shutil.which(ssh_keygen)
    if program is None:
        raise SigningFailed(
            f"{ssh_keygen} is not installed: OpenSSH and FIDO2 keys are signed with "
            "`ssh-keygen -Y sign`; install the OpenSSH client"
        )
    try:
        # stdin carries the message (no temporary file); stderr stays on the terminal so
        # the passphrase and "confirm user presence" prompts reach the approver.
        result = subprocess.run(  # noqa: S603 - fixed program, arguments are not a shell line
            [program, "-Y", "sign", "-n", namespace, "-f", str(key_file)],
            input=message,
            stdout=subprocess.PIPE,
            timeout=SSH_KEYGEN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SigningFailed(
            f"ssh-keygen did not finish within {SSH_KEYGEN_TIMEOUT_SECONDS:.0f} s "
            "(a passphrase not typed, or a hardware key not touched?)"
        ) from None
    except OSError as exc:
        raise SigningFailed(f"cannot run {program}: {exc.strerror}") from None
    signature = result.stdout.decode("ascii", errors="replace").strip()
    if result.returncode != 0 or "-----BEGIN SSH SIGNATURE-----" not in signature:
        raise SigningFailed(
            f"ssh-keygen could not sign with {key_file} (exit {result.returncode}); "
            "its message is above"
        )
    return signature


def _pem_key(key_file: Path, text: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(text.encode("ascii", errors="replace"), None)
    except (ValueError, TypeError):
        raise SigningFailed(f"{key_file}: the PEM private key cannot be read") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningFailed(f"{key_file}: a PEM key must be Ed25519 to sign approvals")
    return key


def _seed_key(key_file: Path, encoded: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SigningFailed(
            f"{key_file}: the seed after 'ed25519-private:' is not base64"
        ) from None
    if len(seed) != 32:
        raise SigningFailed(f"{key_file}: an Ed25519 seed is 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _raw_signature(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")
