"""Approver keys and the signatures they make over an ``ApprovalPayload``.

Pure: parsing and verification only, no processes or files (signing on the approver's
machine is ``kittylab.cli.signing``).

Keys an approver can register (``parse_public_key``):

- an OpenSSH public key line: ``ssh-ed25519``, ``sk-ssh-ed25519@openssh.com`` (FIDO2),
  ``ecdsa-sha2-nistp256/384/521`` and ``sk-ecdsa-sha2-nistp256@openssh.com`` (FIDO2);
- a PEM ``-----BEGIN PUBLIC KEY-----`` Ed25519 key;
- a raw Ed25519 key written ``ed25519:<base64 of 32 bytes>``.

Every form is stored as one canonical OpenSSH line (``PublicKey.text``), so the same key
given twice in different forms is recognised, and its fingerprint is the one
``ssh-keygen -l`` prints. RSA and DSA are refused: an approval is a safety decision, and
those are the key types the lab does not want to depend on.

Signatures (``verify``):

- raw: base64 of a 64-byte Ed25519 signature over the message (Ed25519 keys only);
- ``-----BEGIN SSH SIGNATURE-----``: ``ssh-keygen -Y sign -n kittylab`` output, the SSHSIG
  format of OpenSSH's PROTOCOL.sshsig; FIDO2 keys sign per PROTOCOL.u2f and must have
  confirmed user presence.

Every refusal raises ``SignatureRejected`` with a reason precise enough to act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kittylab.domain.errors import SignatureRejected, ValidationFailed
from kittylab.safety.approval_payload import SSH_NAMESPACE

FIELD = "publicKey"
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
# FIDO2 authenticator flag: the person touched the key (PROTOCOL.u2f).
USER_PRESENCE = 0x01
MAX_KEY_TEXT = 16_384
MAX_SIGNATURE_TEXT = 16_384

ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
SSHSIG_MAGIC = b"SSHSIG"
SSHSIG_VERSION = 1
_SSHSIG_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}

BAD_SIGNATURE = "does not verify: wrong key, or the payload was altered"
NO_PRESENCE = "the hardware key did not confirm user presence"


class KeyKind(StrEnum):
    """The OpenSSH key types KittyLab accepts; the value is the OpenSSH type name."""

    ED25519 = "ssh-ed25519"
    SK_ED25519 = "sk-ssh-ed25519@openssh.com"
    ECDSA_P256 = "ecdsa-sha2-nistp256"
    ECDSA_P384 = "ecdsa-sha2-nistp384"
    ECDSA_P521 = "ecdsa-sha2-nistp521"
    SK_ECDSA_P256 = "sk-ecdsa-sha2-nistp256@openssh.com"

    @property
    def hardware(self) -> bool:
        """A FIDO2 key: every signature says whether a person touched it."""
        return self in (KeyKind.SK_ED25519, KeyKind.SK_ECDSA_P256)

    @property
    def label(self) -> str:
        """The short name ``ssh-keygen -t`` uses (and audit entries show)."""
        return _LABELS[self]


_LABELS = {
    KeyKind.ED25519: "ed25519",
    KeyKind.SK_ED25519: "ed25519-sk",
    KeyKind.ECDSA_P256: "ecdsa-p256",
    KeyKind.ECDSA_P384: "ecdsa-p384",
    KeyKind.ECDSA_P521: "ecdsa-p521",
    KeyKind.SK_ECDSA_P256: "ecdsa-p256-sk",
}
# curve identifier in the key blob, the curve, and the hash ECDSA signs with (RFC 5656).
_ECDSA: dict[KeyKind, tuple[bytes, ec.EllipticCurve, hashes.HashAlgorithm]] = {
    KeyKind.ECDSA_P256: (b"nistp256", ec.SECP256R1(), hashes.SHA256()),
    KeyKind.ECDSA_P384: (b"nistp384", ec.SECP384R1(), hashes.SHA384()),
    KeyKind.ECDSA_P521: (b"nistp521", ec.SECP521R1(), hashes.SHA512()),
    KeyKind.SK_ECDSA_P256: (b"nistp256", ec.SECP256R1(), hashes.SHA256()),
}
_REFUSED_TYPES = {
    "ssh-rsa": "RSA",
    "rsa-sha2-256": "RSA",
    "rsa-sha2-512": "RSA",
    "ssh-dss": "DSA",
}
_NEEDED = (
    "approvals need an Ed25519 key or a FIDO2 hardware key "
    "(ssh-keygen -t ed25519, or -t ed25519-sk)"
)


@dataclass(frozen=True)
class PublicKey:
    """A parsed approver key. ``blob`` is its OpenSSH wire encoding; two keys are the same
    key exactly when their blobs are equal (a FIDO2 key's blob includes its application)."""

    kind: KeyKind
    blob: bytes
    comment: str = ""

    @property
    def material(self) -> str:
        """``type base64``: what identifies the key, without the comment."""
        return f"{self.kind.value} {base64.b64encode(self.blob).decode('ascii')}"

    @property
    def text(self) -> str:
        """The canonical text to store: an OpenSSH public key line."""
        return f"{self.material} {self.comment}" if self.comment else self.material

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>``, as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _Malformed(Exception):
    """Wire data ended early or held a value of the wrong shape."""


class _Reader:
    """Reads the SSH wire encoding (RFC 4251 §5): uint32, byte, string, mpint."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self._at + n > len(self._data):
            raise _Malformed("ends early")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.u32())

    def mpint(self) -> int:
        value = int.from_bytes(self.string(), "big", signed=True)
        if value < 0:
            raise _Malformed("negative integer")
        return value

    def end(self) -> None:
        if self._at != len(self._data):
            raise _Malformed("has trailing bytes")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- keys ---------------------------------------------------------------------------------


def parse_public_key(text: str) -> PublicKey:
    """The key an approver registers, in one of the forms listed in the module docstring.
    Raises ``ValidationFailed("publicKey", reason)`` for anything else."""
    stripped = text.strip()
    if not stripped:
        raise ValidationFailed(FIELD, "is required")
    if len(stripped) > MAX_KEY_TEXT:
        raise ValidationFailed(FIELD, f"is over {MAX_KEY_TEXT} characters; no key is that long")
    if "PRIVATE KEY" in stripped or stripped.startswith("ed25519-private:"):
        raise ValidationFailed(
            FIELD,
            "this is a private key; give the public one (the .pub file) and keep this secret",
        )
    if stripped.startswith("-----BEGIN PUBLIC KEY-----"):
        return _from_pem(stripped)
    if stripped.startswith("-----BEGIN"):
        raise ValidationFailed(
            FIELD, "the only PEM form accepted is '-----BEGIN PUBLIC KEY-----' (Ed25519)"
        )
    if stripped.lower().startswith("ed25519:"):
        return _from_raw(stripped.split(":", 1)[1].strip())
    if "\n" in stripped or "\r" in stripped:
        raise ValidationFailed(FIELD, "holds more than one line; give one public key line")
    parts = stripped.split()
    key_type = parts[0]
    if key_type in _REFUSED_TYPES:
        raise ValidationFailed(
            FIELD, f"{_REFUSED_TYPES[key_type]} keys are not accepted: {_NEEDED}"
        )
    if len(parts) == 1:
        raw = _b64(key_type)
        if raw is not None and len(raw) == ED25519_KEY_BYTES:
            raise ValidationFailed(
                FIELD, "write a raw Ed25519 key with its type: 'ed25519:<base64>'"
            )
        raise ValidationFailed(
            FIELD, "must be an OpenSSH public key line ('ssh-ed25519 AAAA… comment')"
        )
    try:
        kind = KeyKind(key_type)
    except ValueError:
        accepted = ", ".join(k.value for k in KeyKind)
        raise ValidationFailed(
            FIELD, f"key type {key_type!r} is not accepted; use one of {accepted}"
        ) from None
    blob = _b64(parts[1])
    if blob is None:
        raise ValidationFailed(FIELD, "the key data is not valid base64")
    try:
        key = key_from_blob(blob)
    except ValueError as exc:
        raise ValidationFailed(FIELD, str(exc)) from None
    if key.kind is not kind:
        raise ValidationFailed(
            FIELD, f"the line says {kind.value} but the key data is a {key.kind.value} key"
        )
    return PublicKey(kind, blob, " ".join(parts[2:]))


def key_from_blob(blob: bytes) -> PublicKey:
    """A key from its OpenSSH wire encoding. Raises ``ValueError`` with the reason."""
    reader = _Reader(blob)
    try:
        type_name = reader.string().decode("ascii", errors="replace")
        try:
            kind = KeyKind(type_name)
        except ValueError:
            if type_name in _REFUSED_TYPES:
                raise ValueError(
                    f"{_REFUSED_TYPES[type_name]} keys are not accepted: {_NEEDED}"
                ) from None
            raise ValueError(f"key type {type_name!r} is not accepted") from None
        if kind in (KeyKind.ED25519, KeyKind.SK_ED25519):
            _ed25519(reader.string())
        else:
            curve_name, curve, _ = _ECDSA[kind]
            if reader.string() != curve_name:
                raise ValueError(f"the key data is not a {kind.value} key (wrong curve)")
            _ecdsa(curve, reader.string())
        if kind.hardware:
            reader.string()  # the FIDO2 application, usually "ssh:"
        reader.end()
    except _Malformed as exc:
        raise ValueError(f"the key data is malformed (it {exc})") from None
    return PublicKey(kind, blob)


def _ed25519(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 key is {ED25519_KEY_BYTES} bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _ecdsa(curve: ec.EllipticCurve, point: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise ValueError(f"the key data is not a point on {curve.name}") from None


def _ed25519_blob(raw: bytes) -> bytes:
    return _string(KeyKind.ED25519.value.encode()) + _string(raw)


def _from_raw(encoded: str) -> PublicKey:
    raw = _b64(encoded)
    if raw is None:
        raise ValidationFailed(FIELD, "the Ed25519 key after 'ed25519:' is not valid base64")
    if len(raw) != ED25519_KEY_BYTES:
        raise ValidationFailed(
            FIELD, f"an Ed25519 key is {ED25519_KEY_BYTES} bytes; this one is {len(raw)}"
        )
    return PublicKey(KeyKind.ED25519, _ed25519_blob(raw))


def _from_pem(text: str) -> PublicKey:
    try:
        loaded = serialization.load_pem_public_key(text.encode("ascii", errors="replace"))
    except (ValueError, UnsupportedAlgorithm):
        raise ValidationFailed(FIELD, "the PEM public key cannot be read") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValidationFailed(FIELD, f"a PEM key must be Ed25519: {_NEEDED}")
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(KeyKind.ED25519, _ed25519_blob(raw))


# --- signatures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _SshSig:
    key_blob: bytes
    namespace: bytes
    reserved: bytes
    hash_algorithm: str
    signature: bytes


def signature_key(signature: str) -> PublicKey | None:
    """The key embedded in an SSHSIG signature (so the server can find which of the
    approver's keys was used); ``None`` for a raw signature, which names no key.
    Raises ``SignatureRejected`` when the signature cannot be read."""
    text = _signature_text(signature)
    if not text.startswith(ARMOR_BEGIN):
        return None
    sig = _parse_sshsig(text)
    try:
        return key_from_blob(sig.key_blob)
    except ValueError as exc:
        raise SignatureRejected(f"the key inside the SSH signature: {exc}") from None


def verify(
    public_key: PublicKey, message: bytes, signature: str, *, namespace: str = SSH_NAMESPACE
) -> None:
    """Return when ``signature`` is ``public_key``'s signature of ``message``; otherwise
    raise ``SignatureRejected`` naming the reason. An SSH signature must be made for
    ``namespace`` (approvals: ``kittylab``; key enrolment proofs have their own)."""
    text = _signature_text(signature)
    if text.startswith(ARMOR_BEGIN):
        _verify_sshsig(public_key, message, _parse_sshsig(text), namespace)
    elif text.startswith("-----"):
        raise SignatureRejected(
            f"is not an SSH signature: armored signatures start with {ARMOR_BEGIN}"
        )
    else:
        _verify_raw(public_key, message, text)


def _signature_text(signature: str) -> str:
    text = signature.strip()
    if not text:
        raise SignatureRejected("is empty")
    if len(text) > MAX_SIGNATURE_TEXT:
        raise SignatureRejected(f"is over {MAX_SIGNATURE_TEXT} characters; no signature is")
    return text


def _verify_raw(public_key: PublicKey, message: bytes, text: str) -> None:
    if public_key.kind is not KeyKind.ED25519:
        # A FIDO2 signature is over authenticator data, not the message: only the SSHSIG
        # form carries the flags that prove a person touched the key.
        raise SignatureRejected(
            f"a {public_key.kind.label} key signs with 'ssh-keygen -Y sign -n {SSH_NAMESPACE}'; "
            "a raw signature is accepted from Ed25519 keys only"
        )
    raw = _b64(text)
    if raw is None:
        raise SignatureRejected("is not valid base64 (nor an armored SSH signature)")
    if len(raw) != ED25519_SIGNATURE_BYTES:
        raise SignatureRejected(
            f"is {len(raw)} bytes; an Ed25519 signature is {ED25519_SIGNATURE_BYTES}"
        )
    try:
        _ed25519(_key_field(public_key)).verify(raw, message)
    except InvalidSignature:
        raise SignatureRejected(BAD_SIGNATURE) from None


def _key_field(public_key: PublicKey) -> bytes:
    """The key bytes of a parsed key's blob (the second string of it)."""
    reader = _Reader(public_key.blob)
    reader.string()
    if public_key.kind in _ECDSA:
        reader.string()
    return reader.string()


def _parse_sshsig(text: str) -> _SshSig:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines[-1] != ARMOR_END:
        raise SignatureRejected(f"the SSH signature is truncated: it has no {ARMOR_END} line")
    body = "".join(lines[1:-1])
    data = _b64(body)
    if data is None or not data:
        raise SignatureRejected("the SSH signature is not valid base64")
    reader = _Reader(data)
    try:
        if reader.take(len(SSHSIG_MAGIC)) != SSHSIG_MAGIC:
            raise SignatureRejected("is not an SSHSIG signature (its magic is wrong)")
        version = reader.u32()
        if version != SSHSIG_VERSION:
            raise SignatureRejected(f"SSHSIG version {version} is not supported (only 1)")
        sig = _SshSig(
            key_blob=reader.string(),
            namespace=reader.string(),
            reserved=reader.string(),
            hash_algorithm=reader.string().decode("ascii", errors="replace"),
            signature=reader.string(),
        )
        reader.end()
    except _Malformed as exc:
        raise SignatureRejected(f"the SSH signature is malformed (it {exc})") from None
    return sig


def _verify_sshsig(public_key: PublicKey, message: bytes, sig: _SshSig, expected: str) -> None:
    namespace = sig.namespace.decode("utf-8", errors="replace")
    if namespace != expected:
        raise SignatureRejected(
            f"signed for namespace {namespace!r}, not {expected!r} "
            f"(sign with: ssh-keygen -Y sign -n {expected})"
        )
    hash_function = _SSHSIG_HASHES.get(sig.hash_algorithm)
    if hash_function is None:
        raise SignatureRejected(
            f"hash algorithm {sig.hash_algorithm!r} is not supported (sha256 or sha512)"
        )
    if sig.key_blob != public_key.blob:
        try:
            used = key_from_blob(sig.key_blob).fingerprint
        except ValueError as exc:
            raise SignatureRejected(f"the key inside the SSH signature: {exc}") from None
        raise SignatureRejected(
            f"signed with key {used}, not the approver's key {public_key.fingerprint}"
        )
    # PROTOCOL.sshsig: what the key signs is this blob, not the message itself.
    signed = (
        SSHSIG_MAGIC
        + _string(sig.namespace)
        + _string(sig.reserved)
        + _string(sig.hash_algorithm.encode("ascii"))
        + _string(hash_function(message).digest())
    )
    try:
        _verify_inner(public_key, signed, sig.signature)
    except _Malformed as exc:
        raise SignatureRejected(f"the signature inside the SSH signature {exc}") from None


def _verify_inner(public_key: PublicKey, signed: bytes, blob: bytes) -> None:
    """Check the key-type-specific signature ``blob`` over ``signed``."""
    kind = public_key.kind
    reader = _Reader(blob)
    sig_type = reader.string().decode("ascii", errors="replace")
    if sig_type != kind.value:
        raise SignatureRejected(f"is a {sig_type!r} signature, but the key is {kind.value}")
    raw = reader.string()
    flags = counter = 0
    if kind.hardware:
        flags, counter = reader.u8(), reader.u32()
    reader.end()
    if kind.hardware:
        # PROTOCOL.u2f: the authenticator signs SHA256(application) || flags || counter ||
        # SHA256(data), where data is the SSHSIG blob above.
        application = _application(public_key)
        signed = (
            hashlib.sha256(application).digest()
            + bytes([flags])
            + counter.to_bytes(4, "big")
            + hashlib.sha256(signed).digest()
        )
    try:
        if kind in (KeyKind.ED25519, KeyKind.SK_ED25519):
            if len(raw) != ED25519_SIGNATURE_BYTES:
                raise _Malformed(f"is {len(raw)} bytes, not {ED25519_SIGNATURE_BYTES}")
            _ed25519(_key_field(public_key)).verify(raw, signed)
        else:
            _, curve, hash_algorithm = _ECDSA[kind]
            numbers = _Reader(raw)
            r, s = numbers.mpint(), numbers.mpint()
            numbers.end()
            _ecdsa(curve, _key_field(public_key)).verify(
                encode_dss_signature(r, s), signed, ec.ECDSA(hash_algorithm)
            )
    except InvalidSignature:
        raise SignatureRejected(BAD_SIGNATURE) from None
    if kind.hardware and not flags & USER_PRESENCE:
        raise SignatureRejected(NO_PRESENCE)


def _application(public_key: PublicKey) -> bytes:
    reader = _Reader(public_key.blob)
    reader.string()
    if public_key.kind in _ECDSA:
        reader.string()
    reader.string()
    return reader.string()
