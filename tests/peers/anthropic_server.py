"""A protocol-level stand-in for Anthropic's Messages API (``POST /v1/messages``), built
from the public API reference: ``x-api-key`` and ``anthropic-version`` headers; a body with
``model``, ``max_tokens``, ``messages`` (user/assistant turns, text or text blocks) and an
optional ``system``; a ``message`` object with text ``content`` blocks, ``stop_reason``
and ``usage`` (``input_tokens``, ``output_tokens``); errors as
``{"type": "error", "error": {"type", "message"}}``. It answers with a fixed sentence; it
is a contract peer, not a model."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

API_KEY = "test-anthropic-key"


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def create_app() -> FastAPI:
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/messages")
    async def messages(request: Request) -> JSONResponse:
        if request.headers.get("x-api-key") != API_KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "body is not JSON")
        problem = _validate(body)
        if problem:
            return _error(400, "invalid_request_error", problem)
        app.state.requests.append(body)
        question = _text(body["messages"][-1]["content"])
        if "__overloaded__" in question:
            return _error(529, "overloaded_error", "Overloaded")
        if "__slow__" in question:
            await asyncio.sleep(3)
        answer = "Titanium is strong and light; print it with care."
        words = answer.split()[: body["max_tokens"]]
        system = body.get("system") or ""
        return JSONResponse(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": " ".join(words)}],
                "stop_reason": "end_turn" if len(words) == len(answer.split()) else "max_tokens",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": len(question.split()) + len(str(system).split()),
                    "output_tokens": len(words),
                },
            }
        )

    return app


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be user or assistant"
        if not isinstance(m.get("content"), str | list):
            return f"messages.{i}.content: must be a string or content blocks"
    if messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    if "system" in body and not isinstance(body["system"], str | list):
        return "system: must be a string or text blocks"
    return None
