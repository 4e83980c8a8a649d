"""Approver keys and signatures with real keys: ssh-keygen's own keys and SSHSIG output,
raw Ed25519 from ``cryptography``, and FIDO2 (``sk-``) signatures built per PROTOCOL.u2f
with a software key (and checked by ``ssh-keygen -Y verify`` too)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kittylab.cli.signing import SigningFailed, sign
from kittylab.domain.errors import SignatureRejected, ValidationFailed
from kittylab.manifest.fields import public_key_problem
from kittylab.manifest.model import key_material
from kittylab.safety.signatures import (
    KeyKind,
    PublicKey,
    parse_public_key,
    signature_key,
    verify,
)

MESSAGE = b'{"event":"e1","intent":"unlock_door","nonce":"abcdefghijklmnop"}'
SSH_KEYGEN = "/usr/bin/ssh-keygen"


def ssh_keygen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SSH_KEYGEN, *args], input=stdin, capture_output=True, timeout=30, check=False
    )


def make_key(tmp_path: Path, name: str, kind: str = "ed25519", bits: str = "") -> Path:
    path = tmp_path / name
    extra = ["-b", bits] if bits else []
    result = ssh_keygen("-q", "-t", kind, *extra, "-N", "", "-C", f"{name}@lab", "-f", str(path))
    assert result.returncode == 0, result.stderr
    return path


def ssh_sign(key: Path, message: bytes, namespace: str = "kittylab") -> str:
    result = ssh_keygen("-Y", "sign", "-n", namespace, "-f", str(key), stdin=message)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def public(key: Path) -> PublicKey:
    return parse_public_key(key.with_suffix(".pub").read_text())


def rejected(check: Callable[[], object]) -> str:
    with pytest.raises(SignatureRejected) as caught:
        check()
    return caught.value.reason


# --- SSH wire helpers for building FIDO2 signatures by hand ------------------------------


def string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return string(raw)


def armor(blob: bytes) -> str:
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"])


def sshsig(key_blob: bytes, inner: bytes, namespace: bytes = b"kittylab") -> str:
    return armor(
        b"SSHSIG"
        + (1).to_bytes(4, "big")
        + string(key_blob)
        + string(namespace)
        + string(b"")
        + string(b"sha512")
        + string(inner)
    )


def signed_data(message: bytes, namespace: bytes = b"kittylab") -> bytes:
    return (
        b"SSHSIG"
        + string(namespace)
        + string(b"")
        + string(b"sha512")
        + string(hashlib.sha512(message).digest())
    )


def authenticator_data(application: bytes, flags: int, counter: int, data: bytes) -> bytes:
    return (
        hashlib.sha256(application).digest()
        + bytes([flags])
        + counter.to_bytes(4, "big")
        + hashlib.sha256(data).digest()
    )


SK_ED25519 = b"sk-ssh-ed25519@openssh.com"
SK_ECDSA = b"sk-ecdsa-sha2-nistp256@openssh.com"


def sk_ed25519(
    private: Ed25519PrivateKey, message: bytes, flags: int, namespace: bytes = b"kittylab"
) -> tuple[PublicKey, str]:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key_blob = string(SK_ED25519) + string(raw) + string(b"ssh:")
    signed = authenticator_data(b"ssh:", flags, 7, signed_data(message, namespace))
    inner = string(SK_ED25519) + string(private.sign(signed)) + bytes([flags]) + (7).to_bytes(4)
    key = parse_public_key(f"{SK_ED25519.decode()} {base64.b64encode(key_blob).decode()} yk")
    return key, sshsig(key_blob, inner, namespace)


def sk_ecdsa(
    private: ec.EllipticCurvePrivateKey, message: bytes, flags: int
) -> tuple[PublicKey, str]:
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key_blob = string(SK_ECDSA) + string(b"nistp256") + string(point) + string(b"ssh:")
    signed = authenticator_data(b"ssh:", flags, 3, signed_data(message))
    r, s = decode_dss_signature(private.sign(signed, ec.ECDSA(hashes.SHA256())))
    inner = string(SK_ECDSA) + string(mpint(r) + mpint(s)) + bytes([flags]) + (3).to_bytes(4)
    key = parse_public_key(f"{SK_ECDSA.decode()} {base64.b64encode(key_blob).decode()}")
    return key, sshsig(key_blob, inner)


def openssh_accepts(tmp_path: Path, key: PublicKey, signature: str, message: bytes) -> bool:
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"approver {key.material}\n")
    sig = tmp_path / "candidate.sig"
    sig.write_text(signature + "\n")
    result = ssh_keygen(
        "-Y",
        "verify",
        "-f",
        str(signers),
        "-I",
        "approver",
        "-n",
        "kittylab",
        "-s",
        str(sig),
        stdin=message,
    )
    return result.returncode == 0


# --- parsing keys ------------------------------------------------------------------------


def test_an_openssh_ed25519_key_keeps_its_line_and_gets_ssh_keygens_fingerprint(
    tmp_path: Path,
) -> None:
    path = make_key(tmp_path, "ada")
    line = path.with_suffix(".pub").read_text().strip()
    key = parse_public_key(line + "\n")
    assert key.kind is KeyKind.ED25519
    assert key.text == line
    listed = ssh_keygen("-l", "-f", str(path.with_suffix(".pub"))).stdout.decode()
    assert listed.split()[1] == key.fingerprint


@pytest.mark.parametrize(
    ("kind", "bits", "expected"),
    [
        ("ecdsa", "256", KeyKind.ECDSA_P256),
        ("ecdsa", "384", KeyKind.ECDSA_P384),
        ("ecdsa", "521", KeyKind.ECDSA_P521),
    ],
)
def test_ecdsa_keys_are_accepted(tmp_path: Path, kind: str, bits: str, expected: KeyKind) -> None:
    assert public(make_key(tmp_path, "ec", kind, bits)).kind is expected


def test_pem_and_raw_ed25519_keys_become_the_same_canonical_openssh_key() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    openssh = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    from_raw = parse_public_key("ed25519:" + base64.b64encode(raw).decode())
    from_pem = parse_public_key(pem)
    assert from_raw == from_pem == parse_public_key(openssh)
    assert from_raw.text == openssh


def test_a_fido2_key_line_is_accepted_as_a_hardware_key() -> None:
    key, _ = sk_ed25519(Ed25519PrivateKey.generate(), MESSAGE, 0x01)
    assert key.kind is KeyKind.SK_ED25519
    assert key.kind.hardware
    assert parse_public_key(key.text) == key


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is required"),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me", "RSA keys are not accepted"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP me", "DSA keys are not accepted"),
        ("ssh-ed25519 not*base64 me", "not valid base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0LSFkW me", "malformed"),
        (
            "ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIA0LSFkW3NiFkYwZrSEy3q51iFswZZIMG/3VuOU2vUch",
            "the key data is a ssh-ed25519 key",
        ),
        ("x-foo AAAA", "key type 'x-foo' is not accepted"),
        ("ed25519:AAAA", "this one is 3"),
        ("ed25519:***", "not valid base64"),
        ("DQtIWRbc2IWRjBmtITLernWIWzBlkgwb/dW45Ta9RyE=", "'ed25519:<base64>'"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----",
            "this is a private key",
        ),
        ("ed25519-private:AAAA", "this is a private key"),
        ("ssh-ed25519 AAAA a\nssh-ed25519 AAAA b", "more than one line"),
        ("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", "cannot be read"),
        ("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----", "only PEM form"),
    ],
)
def test_bad_keys_are_refused_naming_the_field_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_public_key(text)
    assert caught.value.field == "publicKey"
    assert reason in caught.value.message


def test_an_rsa_key_from_ssh_keygen_is_refused_saying_what_to_use(tmp_path: Path) -> None:
    path = make_key(tmp_path, "old", "rsa", "2048")
    with pytest.raises(ValidationFailed) as caught:
        public(path)
    assert "Ed25519" in caught.value.message and "ed25519-sk" in caught.value.message


def test_a_pem_rsa_public_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    text = pem.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(ValidationFailed, match="must be Ed25519"):
        parse_public_key(text)


def test_the_manifest_accepts_exactly_the_keys_the_verifier_accepts(tmp_path: Path) -> None:
    good = public(make_key(tmp_path, "ada"))
    assert public_key_problem(good.text) is None
    rsa_line = make_key(tmp_path, "old", "rsa", "2048").with_suffix(".pub").read_text()
    problem = public_key_problem(rsa_line)
    assert problem is not None and "RSA keys are not accepted" in problem
    # The comment does not make it another key; the raw form of it is the same key.
    assert key_material(good.text + " renamed") == key_material(good.text)


# --- verifying signatures ----------------------------------------------------------------


def test_ssh_keygen_signatures_verify(tmp_path: Path) -> None:
    for kind, bits in (("ed25519", ""), ("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521")):
        key = make_key(tmp_path, f"{kind}{bits}", kind, bits)
        verify(public(key), MESSAGE, ssh_sign(key, MESSAGE))


def test_a_tampered_message_does_not_verify(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    reason = rejected(lambda: verify(public(key), MESSAGE + b" ", ssh_sign(key, MESSAGE)))
    assert reason == "does not verify: wrong key, or the payload was altered"


def test_a_signature_by_another_key_names_both_fingerprints(tmp_path: Path) -> None:
    ada, eve = make_key(tmp_path, "ada"), make_key(tmp_path, "eve")
    reason = rejected(lambda: verify(public(ada), MESSAGE, ssh_sign(eve, MESSAGE)))
    assert reason == (
        f"signed with key {public(eve).fingerprint}, "
        f"not the approver's key {public(ada).fingerprint}"
    )


def test_a_signature_for_another_namespace_is_refused(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    reason = rejected(lambda: verify(public(key), MESSAGE, ssh_sign(key, MESSAGE, "git")))
    assert reason.startswith("signed for namespace 'git', not 'kittylab'")


def test_truncated_armor_and_garbage_base64_are_refused(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    signature = ssh_sign(key, MESSAGE)
    lines = signature.strip().splitlines()
    no_end = "\n".join(lines[:-1])
    assert "truncated" in rejected(lambda: verify(public(key), MESSAGE, no_end))
    body = base64.b64decode("".join(lines[1:-1]))
    cut = armor(body[: len(body) // 2])  # armored properly, but half the signature
    assert "malformed" in rejected(lambda: verify(public(key), MESSAGE, cut))
    garbage = "\n".join([lines[0], "!!!not base64!!!", lines[-1]])
    assert "not valid base64" in rejected(lambda: verify(public(key), MESSAGE, garbage))
    assert "not valid base64" in rejected(lambda: verify(public(key), MESSAGE, "%%%"))
    assert "is empty" in rejected(lambda: verify(public(key), MESSAGE, "  "))


def test_an_unsupported_hash_algorithm_is_named(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    key, signature = sk_ed25519(private, MESSAGE, 0x01)
    body = base64.b64decode("".join(signature.splitlines()[1:-1]))
    tampered = armor(body.replace(string(b"sha512"), string(b"md5")))
    assert "'md5' is not supported" in rejected(lambda: verify(key, MESSAGE, tampered))


def test_raw_ed25519_signatures_verify_and_refuse_precisely() -> None:
    private = Ed25519PrivateKey.generate()
    key = parse_public_key(
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    good = base64.b64encode(private.sign(MESSAGE)).decode()
    verify(key, MESSAGE, good)
    assert signature_key(good) is None
    assert "altered" in rejected(lambda: verify(key, MESSAGE + b"x", good))
    other = base64.b64encode(Ed25519PrivateKey.generate().sign(MESSAGE)).decode()
    assert "wrong key" in rejected(lambda: verify(key, MESSAGE, other))
    short = base64.b64encode(b"\x00" * 10).decode()
    assert rejected(lambda: verify(key, MESSAGE, short)) == (
        "is 10 bytes; an Ed25519 signature is 64"
    )


def test_signature_key_names_the_key_inside_an_ssh_signature(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    found = signature_key(ssh_sign(key, MESSAGE))
    assert found is not None
    assert found.fingerprint == public(key).fingerprint
    assert found.blob == public(key).blob


# --- FIDO2 (sk-) signatures --------------------------------------------------------------


def test_a_fido2_ed25519_signature_with_user_presence_verifies_here_and_in_openssh(
    tmp_path: Path,
) -> None:
    key, signature = sk_ed25519(Ed25519PrivateKey.generate(), MESSAGE, flags=0x01)
    verify(key, MESSAGE, signature)
    assert openssh_accepts(tmp_path, key, signature, MESSAGE)
    assert signature_key(signature) == parse_public_key(key.material)


def test_a_fido2_signature_without_user_presence_is_refused() -> None:
    key, signature = sk_ed25519(Ed25519PrivateKey.generate(), MESSAGE, flags=0x00)
    assert rejected(lambda: verify(key, MESSAGE, signature)) == (
        "the hardware key did not confirm user presence"
    )


def test_a_fido2_signature_over_another_message_does_not_verify() -> None:
    key, signature = sk_ed25519(Ed25519PrivateKey.generate(), MESSAGE, flags=0x01)
    assert "altered" in rejected(lambda: verify(key, b"other", signature))


def test_a_fido2_signature_for_another_namespace_is_refused() -> None:
    key, signature = sk_ed25519(Ed25519PrivateKey.generate(), MESSAGE, 0x01, namespace=b"git")
    assert "namespace 'git'" in rejected(lambda: verify(key, MESSAGE, signature))


def test_a_fido2_ecdsa_signature_verifies_and_needs_presence(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key, signature = sk_ecdsa(private, MESSAGE, flags=0x05)  # presence + verification
    verify(key, MESSAGE, signature)
    assert openssh_accepts(tmp_path, key, signature, MESSAGE)
    key, untouched = sk_ecdsa(private, MESSAGE, flags=0x04)
    assert "user presence" in rejected(lambda: verify(key, MESSAGE, untouched))


def test_a_hardware_key_cannot_use_a_raw_signature() -> None:
    private = Ed25519PrivateKey.generate()
    key, _ = sk_ed25519(private, MESSAGE, 0x01)
    raw = base64.b64encode(private.sign(MESSAGE)).decode()
    assert "raw signature is accepted from Ed25519 keys only" in rejected(
        lambda: verify(key, MESSAGE, raw)
    )


# --- signing on the approver's machine ---------------------------------------------------


def test_sign_with_an_openssh_key_runs_ssh_keygen_and_verifies(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    signature = sign(key, MESSAGE)
    assert signature.startswith("-----BEGIN SSH SIGNATURE-----")
    verify(public(key), MESSAGE, signature)


def test_sign_with_pem_and_seed_keys_makes_raw_signatures_that_verify(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    key = parse_public_key(
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    pem = tmp_path / "approver.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    verify(key, MESSAGE, sign(pem, MESSAGE))
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    seed_file = tmp_path / "approver.seed"
    seed_file.write_text("ed25519-private:" + base64.b64encode(seed).decode() + "\n")
    verify(key, MESSAGE, sign(seed_file, MESSAGE))


def test_sign_refuses_public_keys_missing_files_and_a_missing_ssh_keygen(tmp_path: Path) -> None:
    key = make_key(tmp_path, "ada")
    with pytest.raises(SigningFailed, match="is a public key"):
        sign(key.with_suffix(".pub"), MESSAGE)
    with pytest.raises(SigningFailed, match="cannot read the key file"):
        sign(tmp_path / "absent", MESSAGE)
    with pytest.raises(SigningFailed, match="is not installed"):
        sign(key, MESSAGE, ssh_keygen="no-such-ssh-keygen")
