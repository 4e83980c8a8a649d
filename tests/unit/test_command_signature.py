"""Signed device commands: what a verifying device accepts and refuses (issue 13)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kittylab.adapters.bus import command_key
from kittylab.domain.errors import ValidationFailed
from kittylab.safety.command_signature import (
    MAX_TTL_SECONDS,
    CommandRejected,
    CommandReplayed,
    CommandSigner,
    CommandVerifier,
    canonical,
    key_id,
    public_key_text,
)

NOW = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> CommandSigner:
    return CommandSigner(Ed25519PrivateKey.generate(), ttl_seconds=30, clock=clock)


@pytest.fixture
def verifier(signer: CommandSigner, clock: Clock) -> CommandVerifier:
    return CommandVerifier(signer.public_key, clock=clock)


def test_a_signed_command_verifies_once_with_the_fields_inside_the_signature(
    signer: CommandSigner, verifier: CommandVerifier
) -> None:
    message = signer.sign("r1", "prusa-mk4", "printer_heat", {"nozzle": 210})
    signed = json.loads(message["signed"])
    assert signed == {
        "v": 1,
        "id": "r1",
        "device": "prusa-mk4",
        "intent": "printer_heat",
        "payload": {"nozzle": 210},
        "expires": int(NOW) + 30,
    }
    assert message["signed"] == canonical(signed)
    assert message["keyId"] == key_id(signer.public_key)
    assert len(base64.b64decode(message["signature"])) == 64
    command = verifier.verify("prusa-mk4", json.loads(json.dumps(message)))
    assert (command.request_id, command.intent, command.payload) == (
        "r1",
        "printer_heat",
        {"nozzle": 210},
    )
    with pytest.raises(CommandReplayed, match="replay refused: command r1"):
        verifier.verify("prusa-mk4", message)


def test_unsigned_tampered_foreign_or_misaddressed_commands_are_refused(
    signer: CommandSigner, verifier: CommandVerifier, clock: Clock
) -> None:
    with pytest.raises(CommandRejected, match="unsigned"):
        verifier.verify("door", {"requestId": "r", "intent": "door_unlock", "payload": {}})
    message = signer.sign("r2", "door", "door_lock", {})
    tampered = {**message, "signed": message["signed"].replace("door_lock", "door_unlock")}
    with pytest.raises(CommandRejected, match="does not verify"):
        verifier.verify("door", tampered)
    with pytest.raises(CommandRejected, match="does not verify"):
        verifier.verify("door", {**message, "signature": "not base64!"})
    stranger = CommandSigner(Ed25519PrivateKey.generate(), clock=clock)
    with pytest.raises(CommandRejected, match="does not verify"):
        verifier.verify("door", stranger.sign("r3", "door", "door_unlock", {}))
    with pytest.raises(CommandRejected, match="signed for device door, not welder"):
        verifier.verify("welder", message)
    # The copies outside the signature are what a non-verifying device reads: they must
    # agree with the signed fields.
    with pytest.raises(CommandRejected, match="differ from the signed ones"):
        verifier.verify("door", {**message, "intent": "door_unlock"})
    # None of the refusals used up the id: the genuine message still counts once.
    assert verifier.verify("door", message).intent == "door_lock"


def test_an_expired_command_or_one_expiring_too_far_ahead_is_refused(
    signer: CommandSigner, verifier: CommandVerifier, clock: Clock
) -> None:
    message = signer.sign("late", "door", "door_unlock", {})
    clock.now += 31
    with pytest.raises(CommandRejected, match="expired 1 s ago"):
        verifier.verify("door", message)
    far = CommandSigner(signer.private_key, ttl_seconds=MAX_TTL_SECONDS + 60, clock=clock)
    with pytest.raises(CommandRejected, match="expires more than"):
        verifier.verify("door", far.sign("far", "door", "door_unlock", {}))


def test_ids_are_remembered_only_until_they_expire(
    signer: CommandSigner, verifier: CommandVerifier, clock: Clock
) -> None:
    for i in range(50):
        verifier.verify("light", signer.sign(f"r{i}", "light", "light_on", {}))
    assert verifier.remembered == 50
    clock.now += 31
    verifier.verify("light", signer.sign("fresh", "light", "light_on", {}))
    assert verifier.remembered == 1
    # The same id on another device is another command.
    verifier.verify("lamp", signer.sign("fresh", "lamp", "light_on", {}))


def test_the_key_file_is_created_once_private_and_its_public_half_written(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "mqtt" / "command-signing.key"
    key = command_key.load_or_create(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    again = command_key.load_or_create(key_file)
    assert public_key_text(again.public_key()) == public_key_text(key.public_key())
    public = command_key.public_key_file(key_file).read_text().strip()
    assert public == public_key_text(key.public_key())
    assert [p.name for p in key_file.parent.iterdir() if p.name.startswith(".")] == []


def test_a_key_file_that_is_not_an_ed25519_key_is_a_clear_error(tmp_path: Path) -> None:
    key_file = tmp_path / "command-signing.key"
    key_file.write_text("not a key")
    with pytest.raises(ValidationFailed, match="is not a PEM private key"):
        command_key.load_or_create(key_file)


def signing_cost(rounds: int = 2000) -> dict[str, Any]:
    """Microseconds per command to sign (the service) and to verify (a device)."""
    signer = CommandSigner(Ed25519PrivateKey.generate())
    verifier = CommandVerifier(signer.public_key)
    payload = {"nozzle": 210, "bed": 60}
    started = time.perf_counter()
    messages = [signer.sign(f"r{i}", "prusa-mk4", "printer_heat", payload) for i in range(rounds)]
    signed = time.perf_counter()
    for message in messages:
        verifier.verify("prusa-mk4", message)
    verified = time.perf_counter()
    return {
        "sign_us": (signed - started) / rounds * 1e6,
        "verify_us": (verified - signed) / rounds * 1e6,
    }


def test_signing_and_verifying_cost_well_under_a_millisecond_each() -> None:
    cost = signing_cost(200)
    assert cost["sign_us"] < 1000 and cost["verify_us"] < 1000, cost


def test_kittylab_mqtt_command_key_prints_the_key_devices_verify_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from typer.testing import CliRunner

    from kittylab import bootstrap
    from kittylab.cli.main import app
    from kittylab.config import Settings

    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    printed = CliRunner().invoke(app, ["mqtt", "command-key"])
    assert printed.exit_code == 0, printed.output
    text = printed.stdout.strip()
    assert text.startswith("ed25519:")
    device_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text.split(":", 1)[1]))
    # What a device given that key verifies: a command the lab's processes sign.
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    message = bootstrap.command_signer(settings).sign("r1", "door", "door_lock", {})
    assert CommandVerifier(device_key).verify("door", message).intent == "door_lock"
    assert (tmp_path / "data" / "mqtt" / "command-signing.pub").read_text().strip() == text
