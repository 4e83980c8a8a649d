"""The local-model stage on an OpenAI-compatible server (llama.cpp's server, Ollama …):
the same few-shot prompt as the embedded model, continued with ``/completions`` at
temperature 0.

Confidence is the probability of the generated intent: the product of the probabilities
of its tokens, from the ``logprobs`` the server reports. A server that reports none gets a
fixed 0.5, recorded as such, so its readings are only acted on when the threshold allows.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx
from rapidfuzz import fuzz, process

from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.model import ModelReading, ModelUnavailable
from kittylab.conversation.understanding.prompt import prompt_prefix, request_part
from kittylab.conversation.understanding.types import INTENTS
from kittylab.conversation.understanding.vocabulary import LabVocabulary

NO_LOGPROBS_CONFIDENCE = 0.5
_INTENT = re.compile(r'\{"intent": "([a-z_]+)"')
_DEVICE = re.compile(r'"device": "([A-Za-z0-9_.\-]+)"')


class OpenAICompatibleIntentModel:
    def __init__(
        self,
        base_url: str,
        model: str,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        self.name = f"openai-compatible:{model}"
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
            transport=transport,
            follow_redirects=False,
        )

    def read(
        self, text: str, vocabulary: LabVocabulary, context: ConversationContext
    ) -> ModelReading:
        prompt = prompt_prefix(vocabulary) + request_part(text, context)
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 64,
            "temperature": 0,
            "stop": ["\n"],
            "logprobs": 1,
        }
        try:
            response = self._client.post("/completions", json=body)
            response.raise_for_status()
            data = response.json()
            choice = data["choices"][0]
        except httpx.TimeoutException as exc:
            raise ModelUnavailable("timed out") from exc
        except httpx.HTTPStatusError as exc:
            raise ModelUnavailable(f"HTTP {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"unreachable ({type(exc).__name__})") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelUnavailable("answered with an unexpected body") from exc
        completion = '{"intent": "' + str(choice.get("text", ""))
        reading = _parse(completion)
        if reading is None:
            raise ModelUnavailable("the model's answer was not JSON in the schema")
        intent, device, args = reading
        confidence = _intent_probability(choice.get("logprobs"), intent)
        spelled = completion.removeprefix('{"intent": "').split('"')[0]
        if spelled != intent:
            confidence *= fuzz.WRatio(spelled, intent) / 100
        scores = {intent: confidence}
        return ModelReading(intent, device, args, confidence, scores, self.name)


def _parse(completion: str) -> tuple[str, str | None, dict[str, Any]] | None:
    """The reading in a completion. A small model may break the JSON after the fields
    that matter, so the intent (which must be one of the vocabulary) and the device are
    read field by field when the whole line does not parse."""
    end = completion.rfind("}")
    try:
        data = json.loads(completion[: end + 1])
    except ValueError:
        data = None
    if not isinstance(data, dict):
        intent = _INTENT.match(completion)
        device = _DEVICE.search(completion)
        data = {
            "intent": intent.group(1) if intent else None,
            "device": device.group(1) if device else None,
        }
    intent = data.get("intent")
    if not isinstance(intent, str):
        return None
    if intent not in INTENTS:
        # Nothing constrains a remote server's sampling: "printer_pause" is read as the
        # nearest intent of the vocabulary, and the caller lowers the confidence.
        match = process.extractOne(intent, INTENTS, scorer=fuzz.WRatio, score_cutoff=85)
        if match is None:
            return None
        data["intent"] = match[0]
    device = data.get("device")
    args = data.get("args")
    return (
        str(data["intent"]),
        device if isinstance(device, str) and device else None,
        args if isinstance(args, dict) else {},
    )


def _intent_probability(logprobs: Any, intent: str) -> float:
    """exp(sum of the log-probabilities of the tokens spelling the intent and its quote)."""
    if not isinstance(logprobs, dict):
        return NO_LOGPROBS_CONFIDENCE
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or not tokens:
        return NO_LOGPROBS_CONFIDENCE
    spelled = ""
    total = 0.0
    for token, value in zip(tokens, values, strict=False):
        if not isinstance(token, str) or not isinstance(value, int | float):
            return NO_LOGPROBS_CONFIDENCE
        spelled += token
        total += float(value)
        if len(spelled) > len(intent):
            break
    if spelled[: len(intent)] != intent:
        return max(0.0, min(1.0, math.exp(total)))  # the spelled-out (corrected) intent
    return max(0.0, min(1.0, math.exp(total)))
