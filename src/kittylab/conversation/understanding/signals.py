"""Cheap signals read off the normalized text: does it want fresh data, is it negated,
does it try to talk the lab out of its rules, does it sound like a device request at all."""

from __future__ import annotations

import re

_FRESH = re.compile(
    r"\b(price|prices|pricing|cost|costs|how much|cheapest|cheaper|news|latest|newest|"
    r"recent|recently|this week|this month|today|todays|tomorrow|yesterday|currently|"
    r"right now|lead time|lead times|in stock|stock|availability|available|shipping|"
    r"delivery|restock|release|released|announced|update|updates|weather|exchange rate|"
    r"supplier|suppliers|vendor|vendors|order|buy|purchase|market|trend|trending)\b"
)
_NEGATION = re.compile(
    r"\b(dont|do not|doesnt|shouldnt|never|not|no|nobody|nothing|without|stop me)\b"
)
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|bypass|override|skip|disable)\b.{0,40}"
    r"\b(rule|rules|instruction|instructions|safety|policy|policies|approval|approvals|"
    r"prompt|guard|guards|restrictions?)\b"
    r"|\b(jailbreak|system prompt|developer mode|you are now|pretend (you|to))\b"
)
_QUESTION_START = re.compile(
    r"^(what|whats|which|who|whos|why|how|hows|when|where|is|are|can|could|should|would|"
    r"does|do|did|will|explain|tell me|compare|recommend|suggest|give me)\b"
)
ACTION_WORDS = frozenset(
    [
        "turn",
        "switch",
        "dim",
        "brighten",
        "set",
        "unlock",
        "lock",
        "open",
        "close",
        "pause",
        "resume",
        "cancel",
        "abort",
        "stop",
        "print",
        "preheat",
        "heat",
        "cool",
        "power",
        "energize",
        "start",
        "shut",
        "kill",
        "snapshot",
        "picture",
        "photo",
        "read",
        "continue",
        "unpause",
        "secure",
        "enable",
        "disable",
        "light",
        "lights",
    ]
)


def wants_fresh_data(text: str) -> bool:
    return _FRESH.search(text) is not None


def is_negated(text: str) -> bool:
    return _NEGATION.search(text) is not None


def strip_negation(text: str) -> str:
    return " ".join(_NEGATION.sub(" ", text).split())


def is_injection(text: str) -> bool:
    return _INJECTION.search(text) is not None


def is_question(text: str) -> bool:
    return _QUESTION_START.search(text) is not None


_OPEN_QUESTION = re.compile(
    r"^(what|whats|why|how|hows|when|where|which|who|whos|explain|tell me|compare|recommend|"
    r"suggest|should|would|does|do|did|is it safe|is it ok)\b"
)


def is_open_question(text: str) -> bool:
    """A question about something, not a polite request ("can you pause …" is a request;
    "what happens if I turn off the laser" is not)."""
    return _OPEN_QUESTION.search(text) is not None
