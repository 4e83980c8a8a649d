"""Frontier tier clients over HTTP: OpenAI-compatible chat completions and Anthropic
Messages. Both report token usage, which the query service prices with the price table.

Every call has a timeout; transport errors, error statuses and malformed bodies become
``ModelUnavailable`` with a message that never contains the API key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from decimal import Decimal
from typing import Any

import httpx

from kittylab.conversation.ports import TierAnswer
from kittylab.conversation.understanding.model import ModelUnavailable
from kittylab.domain.sanitize import sanitize_text

SYSTEM_PROMPT = (
    "You are the assistant of a fabrication lab (3D printers, CNC, laser cutter, welding). "
    "Answer briefly and factually. You cannot operate any equipment: never claim to have "
    "done so."
)
ANTHROPIC_VERSION = "2023-06-01"


class _HttpClient(ABC):
    """What both providers share: the HTTP client, its timeouts and error mapping. Each
    provider says how it authenticates (``_headers``)."""

    provider = ""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_seconds: float,
        max_output_tokens: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = f"{self.provider}:{model}"
        self.model = model
        self.max_output_tokens = max_output_tokens
        self.cost_per_call: Decimal | None = None  # priced by token usage
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
            headers=self._headers(api_key),
            transport=transport,
            follow_redirects=False,
        )

    @staticmethod
    @abstractmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        """The provider's authentication and version headers."""

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(f"timed out after {self._client.timeout.read}s") from exc
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise ModelUnavailable(f"HTTP {response.status_code}: {_error_message(response)}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ModelUnavailable("answered with a body that is not JSON") from exc
        if not isinstance(data, dict):
            raise ModelUnavailable("answered with an unexpected body")
        return data

    def close(self) -> None:
        self._client.close()


class OpenAIChat(_HttpClient):
    """``POST {url}/chat/completions``; ``url`` includes the version (``…/v1``)."""

    provider = "openai"

    @staticmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def answer(self, question: str) -> TierAnswer:
        data = self._post(
            "/chat/completions",
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": question},
                ],
                "max_tokens": self.max_output_tokens,
            },
        )
        try:
            text = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
            return TierAnswer(
                text=_clean_answer(text),
                model=str(data.get("model") or self.model),
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelUnavailable("answered without a message") from exc


class AnthropicMessages(_HttpClient):
    """``POST {url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``."""

    provider = "anthropic"

    @staticmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def answer(self, question: str) -> TierAnswer:
        data = self._post(
            "/v1/messages",
            {
                "model": self.model,
                "max_tokens": self.max_output_tokens,
                "system": SYSTEM_PROMPT,
                "messages": [{"role": "user", "content": question}],
            },
        )
        try:
            blocks = data["content"]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            usage = data.get("usage") or {}
            return TierAnswer(
                text=_clean_answer(text),
                model=str(data.get("model") or self.model),
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelUnavailable("answered without a message") from exc


def _clean_answer(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ModelUnavailable("answered with an empty message")
    return sanitize_text(text.strip(), 8000)


def _error_message(response: httpx.Response) -> str:
    """The provider's own error message (both APIs nest it under ``error.message``)."""
    try:
        data = response.json()
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else ""
    except (ValueError, KeyError, TypeError, AttributeError):
        message = ""
    return sanitize_text(str(message) or response.reason_phrase or "error", 300)
