"""The UniFi Access webhook signature check: every refusal, and only the genuine passes."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from kittylab.domain.errors import AuthenticationRequired, ValidationFailed
from kittylab.domain.unifi_access import parse_event
from kittylab.safety.webhook_signature import Refusal, SignatureRefused, parse_header, sign, verify

SECRET = b"whsec-unit-test-secret"
BODY = b'{"event":"access.door.unlock","data":{"actor":{"id":"u1"}}}'
NOW = 1_764_252_000
SKEW = 300


def header(timestamp: int = NOW, body: bytes = BODY, secret: bytes = SECRET) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def refusal(**overrides: object) -> SignatureRefused:
    kwargs: dict[str, object] = {
        "secret": SECRET,
        "header": header(),
        "body": BODY,
        "now": float(NOW),
        "max_skew": SKEW,
    }
    kwargs.update(overrides)
    with pytest.raises(SignatureRefused) as caught:
        verify(**kwargs)  # type: ignore[arg-type]
    return caught.value


def test_sign_is_hmac_sha256_over_timestamp_dot_raw_body() -> None:
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected


def test_a_genuine_delivery_verifies_and_returns_its_timestamp() -> None:
    assert verify(secret=SECRET, header=header(), body=BODY, now=NOW + 10.5, max_skew=SKEW) == NOW


def test_a_tampered_body_is_a_signature_mismatch() -> None:
    tampered = BODY.replace(b"u1", b"u2")
    assert refusal(body=tampered).reason is Refusal.MISMATCH


def test_a_body_reserialized_with_other_whitespace_does_not_verify() -> None:
    # The HMAC covers the raw bytes, not the JSON they parse to.
    assert refusal(body=BODY.replace(b",", b", ")).reason is Refusal.MISMATCH


def test_the_wrong_secret_is_a_signature_mismatch() -> None:
    assert refusal(header=header(secret=b"another-secret")).reason is Refusal.MISMATCH


def test_a_signature_for_another_timestamp_is_a_mismatch() -> None:
    forged = f"t={NOW + 1},v1={sign(SECRET, NOW, BODY)}"
    assert refusal(header=forged).reason is Refusal.MISMATCH


def test_an_old_timestamp_is_refused_as_a_replay() -> None:
    stale = refusal(header=header(timestamp=NOW - SKEW - 1))
    assert stale.reason is Refusal.TOO_OLD
    assert "301 s ago" in stale.message


def test_a_timestamp_at_the_edge_of_the_window_is_accepted() -> None:
    assert verify(secret=SECRET, header=header(NOW - SKEW), body=BODY, now=NOW, max_skew=SKEW) == (
        NOW - SKEW
    )


def test_a_future_timestamp_is_refused() -> None:
    assert refusal(header=header(timestamp=NOW + SKEW + 60)).reason is Refusal.IN_FUTURE


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        f"v1={sign(SECRET, NOW, BODY)}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t=yesterday,v1={sign(SECRET, NOW, BODY)}",
        f"t={NOW},v1=abc",  # not 64 hex digits
        f"t={NOW},t={NOW},v1={sign(SECRET, NOW, BODY)}",
        f"t={NOW},v1={'z' * 64}",
        "t=" + "1" * 2000,
    ],
)
def test_a_malformed_header_is_refused_as_malformed(value: str) -> None:
    assert refusal(header=value).reason is Refusal.MALFORMED_HEADER


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_header_is_refused_as_missing(value: str | None) -> None:
    assert refusal(header=value).reason is Refusal.MISSING_HEADER


@pytest.mark.parametrize("secret", [None, b""])
def test_no_configured_secret_refuses_even_a_well_formed_delivery(secret: bytes | None) -> None:
    refused = refusal(secret=secret, header=header(secret=b""))
    assert refused.reason is Refusal.NOT_CONFIGURED
    assert isinstance(refused, AuthenticationRequired)


def test_refusal_messages_never_contain_the_secret_or_the_signature() -> None:
    received = header(secret=b"another-secret")
    message = refusal(header=received).message
    assert SECRET.decode() not in message
    assert received.split("v1=")[1] not in message


def test_any_of_several_v1_signatures_may_match() -> None:
    good = sign(SECRET, NOW, BODY)
    parsed = parse_header(f"t={NOW}, v1={'0' * 64}, v1={good}, v0=ignored")
    assert parsed.timestamp == NOW and len(parsed.signatures) == 2
    assert (
        verify(
            secret=SECRET,
            header=f"t={NOW},v1={'0' * 64},v1={good}",
            body=BODY,
            now=NOW,
            max_skew=SKEW,
        )
        == NOW
    )


def test_parse_event_reads_the_door_actor_result_and_id() -> None:
    event = parse_event(
        {
            "event": "access.door.unlock",
            "event_object_id": "evt-1",
            "data": {
                "location": {"id": "door-1", "location_type": "door"},
                "actor": {"id": "ua-7", "name": "Olivia"},
                "object": {"result": "ACCESS", "authentication_type": "NFC"},
            },
        }
    )
    assert (event.event_id, event.door_id, event.actor_id) == ("evt-1", "door-1", "ua-7")
    assert event.is_door_access and event.granted


def test_parse_event_treats_a_blocked_or_missing_result_as_not_granted() -> None:
    blocked = parse_event(
        {"event": "access.door.unlock", "data": {"object": {"result": "BLOCKED"}}}
    )
    bare = parse_event({"event": "access.door.unlock"})
    assert not blocked.granted and not bare.granted


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ({"data": {}}, "event"),
        ({"event": "x", "data": []}, "data"),
        ({"event": "x", "data": {"actor": "someone"}}, "data.actor"),
        ({"event": "x", "data": {"location": {"id": 7}}}, "data.location.id"),
        ({"event": "x", "event_object_id": "e" * 129}, "event_object_id"),
    ],
)
def test_parse_event_names_the_field_of_a_malformed_payload(payload: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_event(payload)
    assert caught.value.field == field
