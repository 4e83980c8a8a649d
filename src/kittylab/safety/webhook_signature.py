"""Verifying the signature of a UniFi Access webhook delivery. Pure: no clock, no I/O.

UniFi Access signs every delivery to a registered webhook endpoint (Access API,
"Webhooks": ``POST /api/v1/developer/webhooks/endpoints`` returns the endpoint's
``secret``) with a header

    Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC is keyed with that secret and computed over ``"<t>.<raw request body>"``.
Where this comes from: UniFi's own reference is a PDF shipped inside the Access app and
could not be consulted while writing this; the construction is the one working receivers
of UniFi Access deliveries use (an open-source UniFi Access webhook listener splits the
header on ``,`` and ``=``, HMACs ``f"{t}"``, ``"."`` and the raw body with SHA-256 and
compares with ``hmac.compare_digest``), and it is the common ``t=…,v1=…`` scheme. If the
reference shipped with your controller says otherwise, it wins: change ``sign`` here.
The timestamp is inside the signed bytes, so checking it against the clock is what makes
a captured delivery useless after ``max_skew`` seconds.

The delivery carries no bearer token: this signature *is* its authentication. Every
refusal says precisely why (``SignatureRefused.reason``), and nothing here ever puts the
secret or the received signature into a message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

from kittylab.domain.errors import AuthenticationRequired

HEADER = "Signature"
SCHEME = "v1"
# Unix seconds: 1 to 12 digits (until the year 33658), so int() is always cheap.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# Far more than a real header needs; a larger one is refused before it is parsed.
_MAX_HEADER = 1024


class Refusal(StrEnum):
    """Why a delivery was refused, as a stable code for clients and metrics."""

    NOT_CONFIGURED = "secret_not_configured"
    MISSING_HEADER = "signature_missing"
    MALFORMED_HEADER = "signature_malformed"
    MISMATCH = "signature_mismatch"
    TOO_OLD = "timestamp_too_old"
    IN_FUTURE = "timestamp_in_future"


class SignatureRefused(AuthenticationRequired):
    """The delivery is not provably from UniFi Access. A subclass of
    ``AuthenticationRequired`` so that, mapped nowhere else, it is still a 401."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[bytes, ...]


def parse_header(value: str | None) -> SignatureHeader:
    """``t=<digits>,v1=<64 hex>``; several ``v1`` are accepted (any may match, as during a
    secret rotation), other keys are ignored so a future scheme does not break us."""
    if value is None or not value.strip():
        raise SignatureRefused(Refusal.MISSING_HEADER, f"the {HEADER} header is missing")
    if len(value) > _MAX_HEADER:
        raise _malformed(f"is longer than {_MAX_HEADER} characters")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for part in value.split(","):
        key, sep, raw = part.strip().partition("=")
        if not sep:
            raise _malformed("must look like t=<unix seconds>,v1=<hex HMAC-SHA256>")
        raw = raw.strip()
        if key == "t":
            if timestamp is not None:
                raise _malformed("has more than one t=")
            if not _TIMESTAMP.fullmatch(raw):
                raise _malformed("t= must be unix seconds")
            timestamp = int(raw)
        elif key == SCHEME:
            if not _HEX_SHA256.fullmatch(raw):
                raise _malformed("v1= must be 64 hexadecimal digits (HMAC-SHA256)")
            signatures.append(bytes.fromhex(raw))
    if timestamp is None:
        raise _malformed("has no t= timestamp")
    if not signatures:
        raise _malformed("has no v1= signature")
    return SignatureHeader(timestamp, tuple(signatures))


def _malformed(why: str) -> SignatureRefused:
    return SignatureRefused(Refusal.MALFORMED_HEADER, f"the {HEADER} header {why}")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 UniFi Access sends as ``v1`` (used by tests and tools)."""
    return hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def verify(
    *, secret: bytes | None, header: str | None, body: bytes, now: float, max_skew: int
) -> int:
    """Check a delivery; return its signed timestamp, or raise ``SignatureRefused``.

    Order of checks: a missing secret refuses everything (fail closed); then the header's
    shape; then the HMAC over the raw body (constant-time compare); then the signed
    timestamp against ``now`` ± ``max_skew`` seconds. The timestamp is judged only once
    the signature holds, so "too old" always means a genuine delivery replayed or
    delayed, never a forgery."""
    if not secret:
        raise SignatureRefused(
            Refusal.NOT_CONFIGURED,
            "UniFi Access webhooks are refused: no webhook secret is configured "
            "(KITTYLAB_PRESENCE__UNIFI_WEBHOOK_SECRET)",
        )
    parsed = parse_header(header)
    expected = bytes.fromhex(sign(secret, parsed.timestamp, body))
    # Every candidate is compared, so the time taken does not tell which one failed.
    matched = False
    for candidate in parsed.signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRefused(
            Refusal.MISMATCH,
            "the signature does not match the body under the configured secret",
        )
    age = now - parsed.timestamp
    if age > max_skew:
        raise SignatureRefused(
            Refusal.TOO_OLD,
            f"the delivery was signed {int(age)} s ago, more than the {max_skew} s allowed "
            "(a replay, or clocks out of step)",
        )
    if -age > max_skew:
        raise SignatureRefused(
            Refusal.IN_FUTURE,
            f"the delivery is signed {int(-age)} s in the future, more than the "
            f"{max_skew} s allowed (clocks out of step)",
        )
    return parsed.timestamp
