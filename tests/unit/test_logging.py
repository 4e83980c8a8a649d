import json
import logging

from kittylab.observability import JsonFormatter, request_id_var


def _format(record: logging.LogRecord) -> dict[str, object]:
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def test_log_lines_are_json_with_the_request_id() -> None:
    token = request_id_var.set("req-123")
    try:
        record = logging.LogRecord(
            "kittylab.x", logging.INFO, __file__, 1, "hello %s", ("lab",), None
        )
        record.route = "/api/devices"
        entry = _format(record)
    finally:
        request_id_var.reset(token)
    assert entry["msg"] == "hello lab"
    assert entry["request_id"] == "req-123"
    assert entry["route"] == "/api/devices"
    assert entry["level"] == "info"


def test_secrets_in_messages_and_fields_are_redacted() -> None:
    secret = "kl_" + "A" * 40
    record = logging.LogRecord(
        "kittylab.x", logging.WARNING, __file__, 1, "token %s failed\nnext line", (secret,), None
    )
    record.target = "mailto://bob:hunter2@smtp.lab.example"
    line = JsonFormatter().format(record)
    assert secret not in line
    assert "hunter2" not in line
    assert "\n" not in line


def test_plain_text_logs_are_sanitized_too() -> None:
    from kittylab.observability import PlainFormatter

    secret = "kl_" + "B" * 40
    record = logging.LogRecord(
        "kittylab.cad", logging.INFO, __file__, 1, "prompt: %s", (f"plate {secret}\x07",), None
    )
    line = PlainFormatter().format(record)
    assert secret not in line
    assert "\x07" not in line
    assert "prompt: plate" in line
