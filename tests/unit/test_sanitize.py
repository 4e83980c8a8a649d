from kittylab.domain.clock import uuid7
from kittylab.domain.sanitize import REDACTED, sanitize_payload, sanitize_text


def test_prompt_log_line_has_no_secrets_or_line_breaks() -> None:
    text = "make a bracket\nkey sk-abcdefghijklmnopqrstuv and kl_ABCDEFGHIJKLMNOPQRSTUVWX\x07"
    clean = sanitize_text(text)
    assert "\n" not in clean and "\x07" not in clean
    assert "sk-abcdefghijklmnopqrstuv" not in clean
    assert "kl_ABCDEFGHIJKLMNOPQRSTUVWX" not in clean
    assert clean.startswith("make a bracket ")


def test_url_passwords_are_redacted() -> None:
    assert sanitize_text("mailto://bob:hunter2@smtp.lab") == f"mailto://bob:{REDACTED}@smtp.lab"


def test_long_text_is_cut() -> None:
    assert len(sanitize_text("x" * 1000, max_length=50)) == 50


def test_payload_secret_keys_are_redacted_recursively() -> None:
    payload = {"title": "hi", "auth": {"api_key": "abc", "nested": [{"password": "p"}]}}
    assert sanitize_payload(payload) == {
        "title": "hi",
        "auth": {"api_key": REDACTED, "nested": [{"password": REDACTED}]},
    }


def test_uuid7_orders_by_creation() -> None:
    ids = [uuid7() for _ in range(5)]
    assert all(i.version == 7 for i in ids)
    import time

    time.sleep(0.002)
    later = uuid7()
    assert all(later > i for i in ids)
