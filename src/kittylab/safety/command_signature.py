"""Signed device commands (issue 13): the service signs every ``cmd`` it publishes, and a
device that can verify acts only on a valid, unexpired command it has not seen before.

The broker's ACL already lets only KittyLab's own identities publish a ``cmd``; the
signature is what still holds when that fails (a leaked service or worker password, a
broker run without the ACL): without the command-signing key nobody can make a command a
verifying device accepts, and a command captured off the bus cannot be replayed or
changed.

The message (docs/integrations/mqtt.md, "Signed commands", for firmware writers)::

    {"requestId": "…", "intent": "…", "payload": {…},        # as before, for devices
                                                              # that do not verify
     "signed": "<canonical JSON text>",                      # what the key signed
     "signature": "<base64 of the 64-byte Ed25519 signature of signed's UTF-8 bytes>",
     "keyId": "<first 16 hex digits of SHA-256 of the raw public key>"}

``signed`` holds ``{"v": 1, "id", "device", "intent", "payload", "expires"}`` (``expires``
in whole Unix seconds) written with sorted keys, no whitespace, non-ASCII escaped. A
verifier checks the signature over the text exactly as it arrived — no re-encoding, so
firmware needs no canonical JSON writer — and then acts on the fields inside it.

Pure: keys are given, never read (``adapters/bus/command_key.py`` keeps the key file).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kittylab.domain.errors import DomainError, ValidationFailed

FORMAT_VERSION = 1
DEFAULT_TTL_SECONDS = 30.0
MAX_TTL_SECONDS = 600
"""A verifier refuses a command that expires further ahead than this: it would have to
remember the command's id that long to refuse its replay."""
MAX_REMEMBERED = 100_000
"""Ids a verifier remembers at once. Past it, new commands are refused until old ones
expire (fail closed), rather than forgetting ids that could then be replayed."""

Clock = Callable[[], float]


class CommandRejected(DomainError):
    """A command a verifying device must not act on; the message says why."""


class CommandReplayed(CommandRejected):
    """A command already received. Its first delivery stands (a broker may deliver a QoS 1
    message twice), so the refusal must not fail the command it repeats."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw public key: names the key in a
    message so a device holding several (a rotation) knows which to try."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """``ed25519:<base64 of the 32-byte raw key>``: the form firmware is given."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode("ascii")


def parse_public_key_text(text: str, field: str = "command_key") -> Ed25519PublicKey:
    """The key ``public_key_text`` wrote; ``ValidationFailed`` naming ``field`` otherwise."""
    prefix, _, encoded = text.strip().partition(":")
    try:
        raw = base64.b64decode(encoded, validate=True)
        if prefix != "ed25519" or len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ValidationFailed(field, "must be ed25519:<base64 of the 32-byte key>") from None


def canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps(
        dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


@dataclass(frozen=True)
class CommandSigner:
    """Signs the commands of one lab with its command-signing key."""

    private_key: Ed25519PrivateKey
    ttl_seconds: float = DEFAULT_TTL_SECONDS
    clock: Clock = time.time

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(
        self, request_id: str, device: str, intent: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The ``cmd`` message for this command, expiring ``ttl_seconds`` from now."""
        signed = canonical(
            {
                "v": FORMAT_VERSION,
                "id": request_id,
                "device": device,
                "intent": intent,
                "payload": dict(payload),
                "expires": int(self.clock() + self.ttl_seconds),
            }
        )
        signature = self.private_key.sign(signed.encode("ascii"))
        return {
            "requestId": request_id,
            "intent": intent,
            "payload": dict(payload),
            "signed": signed,
            "signature": base64.b64encode(signature).decode("ascii"),
            "keyId": key_id(self.public_key),
        }


@dataclass(frozen=True)
class VerifiedCommand:
    """What a verified message lets the device do: the fields inside ``signed``."""

    request_id: str
    intent: str
    payload: dict[str, Any]
    expires: int


class CommandVerifier:
    """A device's side: checks a ``cmd`` message and remembers the ids it accepted until
    they expire, so each is acted on once. One verifier serves any number of devices
    (the simulated fleet); ids are remembered per device."""

    def __init__(self, public_key: Ed25519PublicKey, clock: Clock = time.time) -> None:
        self._key = public_key
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}

    def verify(self, device: str, message: Mapping[str, Any]) -> VerifiedCommand:
        """The command ``message`` carries for ``device``, or ``CommandRejected``."""
        signed, signature = message.get("signed"), message.get("signature")
        if signed is None and signature is None:
            raise CommandRejected("unsigned command refused: KittyLab signs every command")
        if not isinstance(signed, str) or not isinstance(signature, str):
            raise CommandRejected("'signed' and 'signature' must be strings")
        try:
            raw = base64.b64decode(signature, validate=True)
            self._key.verify(raw, signed.encode("utf-8"))
        except (binascii.Error, ValueError, InvalidSignature):
            raise CommandRejected(
                "the signature does not verify: not signed by this lab's key, or altered"
            ) from None
        command = _fields(signed)
        if command.device != device:
            raise CommandRejected(f"signed for device {command.device}, not {device}")
        outer = (message.get("requestId"), message.get("intent"), message.get("payload"))
        if outer != (command.request_id, command.intent, command.payload):
            raise CommandRejected("the unsigned copies of the fields differ from the signed ones")
        now = self._clock()
        if command.expires <= now:
            raise CommandRejected(
                f"expired {now - command.expires:.0f} s ago (signed commands live "
                "seconds; a late one is not carried out)"
            )
        if command.expires > now + MAX_TTL_SECONDS:
            raise CommandRejected(f"expires more than {MAX_TTL_SECONDS} s ahead")
        self._remember(device, command, now)
        return VerifiedCommand(command.request_id, command.intent, command.payload, command.expires)

    def _remember(self, device: str, command: _Signed, now: float) -> None:
        # Ids are added with nearly the same lifetime, so the oldest expire first: drop
        # those from the front. An expired id needs no memory: its expiry refuses it.
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] > now:
                break
            del self._seen[oldest]
        key = (device, command.request_id)
        if key in self._seen:
            raise CommandReplayed(
                f"replay refused: command {command.request_id} was already received"
            )
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            if len(self._seen) >= MAX_REMEMBERED:
                raise CommandRejected("too many commands in flight; try again shortly")
        self._seen[key] = command.expires

    @property
    def remembered(self) -> int:
        """How many ids are remembered now (expired ones go as commands arrive)."""
        return len(self._seen)


@dataclass(frozen=True)
class _Signed:
    request_id: str
    device: str
    intent: str
    payload: dict[str, Any]
    expires: int


def _fields(signed: str) -> _Signed:
    try:
        data = json.loads(signed)
    except ValueError:
        raise CommandRejected("'signed' is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        raise CommandRejected(f"'signed' is not a version {FORMAT_VERSION} signed command")
    request_id, device, intent = data.get("id"), data.get("device"), data.get("intent")
    payload, expires = data.get("payload"), data.get("expires")
    if not (isinstance(request_id, str) and isinstance(device, str) and isinstance(intent, str)):
        raise CommandRejected("'signed' lacks its id, device or intent")
    if not isinstance(payload, dict):
        raise CommandRejected("'signed' payload must be an object")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise CommandRejected("'signed' expires must be whole Unix seconds")
    return _Signed(request_id, device, intent, payload, expires)
