"""The few-shot prompt for a small base model, and the JSON schema its answers follow.

A base model does not follow instructions; it continues patterns. So the prompt is a
short description of the lab followed by solved examples, ending where the model must
write the intent. The same text serves the embedded llama.cpp model and any
OpenAI-compatible completion server.
"""

from __future__ import annotations

import json
from typing import Any

from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.types import INTENTS
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.domain.devices import INTENT_CATALOGUE

_EXAMPLES: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("pause the prusa", "print_pause", "prusa-mk4", {}),
    ("what is a good infill for a bracket", "ask", None, {}),
    ("could you dim the farm lights to 30 percent", "light_set_brightness", "farm-lights",
     {"brightness": 30}),
    ("lock the cnc door", "door_lock", "cnc-door", {}),
    ("titanium powder prices this week", "ask", None, {}),
    ("warm the bambu nozzle up to 220", "printer_heat", "bambu-x1c", {"nozzle": 220}),
    ("switch off the welder", "power_off", "welder-power", {}),
    ("kill the bench lights", "light_off", "bench-lights", {}),
    ("explain the difference between pla and petg", "ask", None, {}),
    ("read the fume sensor", "sensor_read", "fume-sensor", {}),
)  # fmt: skip


def prompt_prefix(vocabulary: LabVocabulary) -> str:
    """Everything before the request: stable for a given lab, so a model can keep it
    evaluated between requests."""
    lines = ["Lab devices:"]
    for device in vocabulary.devices:
        names = ", ".join(device.names[:3])
        lines.append(f"- {device.external_id} ({device.kind.value}): {names}")
    lines.append("Intents: " + ", ".join(INTENTS) + ".")
    lines.append("Map each request to JSON.")
    lines.append("")
    for text, intent, example_device, args in _EXAMPLES:
        lines.append(f"Request: {text}")
        lines.append("JSON: " + answer_json(intent, example_device, args))
    return "\n".join(lines) + "\n"


def request_part(text: str, context: ConversationContext) -> str:
    """The request, with the device last talked about so "it" can resolve."""
    clean = " ".join(text.split())[:500]
    hint = f" (it = {context.device})" if context.device else ""
    return f"Request: {clean}{hint}\nJSON: " + '{"intent": "'


def answer_json(intent: str, device: str | None, args: dict[str, Any]) -> str:
    return json.dumps({"intent": intent, "device": device, "args": args})


def device_part(intent: str) -> str:
    """What follows a chosen intent, up to where the device id starts."""
    return intent + '", "device": "'


def args_schema(intent: str) -> dict[str, Any]:
    """The JSON schema of an intent's arguments (empty object when it takes none)."""
    schema = INTENT_CATALOGUE.get(intent)
    if schema is None:
        return {"type": "object", "properties": {}, "additionalProperties": False}
    return dict(schema)
