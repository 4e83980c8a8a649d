"""The signed approval payload covers the held command and its arguments (issue 13)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from uuid import uuid4

from kittylab.safety.approval_payload import (
    VERSION,
    ApprovalPayload,
    arguments_digest,
    canonical_arguments,
    mismatch,
)

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def payload(**changes: object) -> ApprovalPayload:
    fields: dict[str, object] = {
        "event_id": uuid4(),
        "intent": "printer_heat",
        "device_id": uuid4(),
        "zone_id": uuid4(),
        "initiator_id": uuid4(),
        "command_id": uuid4(),
        "arguments_digest": arguments_digest({"nozzle": 210, "bed": 60}),
        "nonce": "n" * 24,
        "expires_at": NOW,
    }
    fields.update(changes)
    return ApprovalPayload(**fields)  # type: ignore[arg-type]


def test_the_arguments_digest_is_sha256_of_canonical_json() -> None:
    arguments = {"nozzle": 210, "bed": 60.5, "file": "benchy.gcode"}
    canonical = b'{"bed":60.5,"file":"benchy.gcode","nozzle":210}'
    assert canonical_arguments(arguments) == canonical
    assert arguments_digest(arguments) == "sha256:" + hashlib.sha256(canonical).hexdigest()
    # Key order and spacing do not change it; a value does.
    assert arguments_digest({"nozzle": 210, "file": "benchy.gcode", "bed": 60.5}) == (
        arguments_digest(arguments)
    )
    assert arguments_digest({**arguments, "nozzle": 280}) != arguments_digest(arguments)
    # Non-ASCII text is escaped, so every JSON library writes the same bytes.
    assert canonical_arguments({"file": "ü"}) == b'{"file":"\\u00fc"}'


def test_the_signed_payload_names_the_command_and_its_arguments() -> None:
    signed = json.loads(payload().canonical())
    assert signed["v"] == VERSION == 2
    assert signed["args"].startswith("sha256:")
    assert set(signed) == {
        "v",
        "event",
        "intent",
        "device",
        "zone",
        "initiator",
        "command",
        "args",
        "nonce",
        "expires",
    }


def test_a_signature_over_other_arguments_or_another_command_does_not_match() -> None:
    expected = payload()
    hotter = ApprovalPayload(
        **{**expected.__dict__, "arguments_digest": arguments_digest({"nozzle": 280, "bed": 60})}
    )
    assert "'args' does not match" in (mismatch(expected, hotter.canonical()) or "")
    other_command = ApprovalPayload(**{**expected.__dict__, "command_id": uuid4()})
    assert "'command' does not match" in (mismatch(expected, other_command.canonical()) or "")


def test_a_version_1_payload_is_refused_with_what_to_do() -> None:
    expected = payload()
    old = json.loads(expected.canonical())
    old["v"] = 1
    del old["command"], old["args"]
    signed = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    reason = mismatch(expected, signed) or ""
    assert "version 1" in reason and "version 2" in reason
    assert "update" in reason


def test_an_event_that_holds_no_command_signs_nulls() -> None:
    signed = json.loads(payload(command_id=None, arguments_digest=None).canonical())
    assert (signed["command"], signed["args"]) == (None, None)
