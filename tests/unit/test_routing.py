"""Tier choice, prices, budgets and the answer cache: pure rules."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from kittylab.adapters.llm.frontier import AnthropicMessages, OpenAIChat
from kittylab.conversation.routing.cache import AnswerCache, CacheKey
from kittylab.conversation.routing.cost import Price, check_budget
from kittylab.conversation.routing.tiers import choose_tier
from kittylab.conversation.understanding.model import ModelUnavailable
from kittylab.conversation.understanding.types import AskKind, Stage, Understanding
from kittylab.domain.enums import Tier


def _ask(kind: AskKind) -> Understanding:
    return Understanding(intent="ask", confidence=0.9, stage=Stage.FALLBACK, ask_kind=kind)


def _choose(u: Understanding, forced: Tier | None = None, local: float = 0.2) -> Tier:
    return choose_tier(u, local_threshold=0.6, local_answer_confidence=local, forced=forced).tier


def test_device_requests_stay_local_even_when_another_tier_is_forced() -> None:
    u = Understanding(intent="print_pause", confidence=0.97, stage=Stage.GRAMMAR)
    assert _choose(u) is Tier.LOCAL
    choice = choose_tier(u, local_threshold=0.6, local_answer_confidence=0, forced=Tier.FRONTIER)
    assert choice.tier is Tier.LOCAL and choice.reason and "ignored" in choice.reason


def test_fresh_data_goes_to_mcp_reasoning_to_frontier_help_stays_local() -> None:
    assert _choose(_ask(AskKind.FRESH_DATA)) is Tier.MCP
    assert _choose(_ask(AskKind.REASONING)) is Tier.FRONTIER
    assert _choose(_ask(AskKind.HELP)) is Tier.LOCAL


def test_reasoning_stays_local_when_the_local_tier_is_trusted_enough() -> None:
    assert _choose(_ask(AskKind.REASONING), local=0.7) is Tier.LOCAL


def test_forced_tier_applies_to_questions() -> None:
    assert _choose(_ask(AskKind.FRESH_DATA), forced=Tier.FRONTIER) is Tier.FRONTIER


def test_cost_is_usage_times_price_per_million() -> None:
    price = Price(Decimal("2.50"), Decimal("10"))
    assert price.cost(1000, 500) == Decimal("0.007500")
    assert price.cost(0, 0) == Decimal(0)


def test_budget_refuses_what_would_exceed_the_daily_limit() -> None:
    assert check_budget(Decimal("0.5"), Decimal("0.4"), Decimal("1")).allowed
    refused = check_budget(Decimal("0.7"), Decimal("0.4"), Decimal("1"))
    assert not refused.allowed and refused.reason and "daily budget" in refused.reason


def test_cache_expires_entries_and_evicts_the_least_recently_used() -> None:
    now = [0.0]
    cache = AnswerCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    a, b, c = (CacheKey(t, (), False) for t in "abc")
    cache.put(a, "A", Tier.MCP, Decimal(0))
    cache.put(b, "B", Tier.MCP, Decimal(0))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, "C", Tier.MCP, Decimal(0))
    assert cache.get(b) is None and cache.get(a) is not None
    now[0] = 11
    assert cache.get(a) is None


def test_cache_keys_differ_across_negation_and_device() -> None:
    cache = AnswerCache(10, 60, lambda: 0.0)
    cache.put(CacheKey("is it on", ("farm-lights",), False), "yes", Tier.FRONTIER, Decimal(0))
    assert cache.get(CacheKey("is it on", ("bench-lights",), False)) is None
    assert cache.get(CacheKey("is it on", ("farm-lights",), True)) is None


@pytest.mark.parametrize("client_cls", [OpenAIChat, AnthropicMessages])
def test_frontier_error_statuses_become_model_unavailable_with_the_provider_message(
    client_cls: type[OpenAIChat] | type[AnthropicMessages],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"type": "rate_limit", "message": "slow down"}})

    client = client_cls(
        base_url="http://frontier.invalid", model="m", api_key="sk-secret-key-1234567890",
        timeout_seconds=1, max_output_tokens=10, transport=httpx.MockTransport(handler),
    )  # fmt: skip
    with pytest.raises(ModelUnavailable, match="HTTP 429: slow down") as caught:
        client.answer("hi")
    assert "sk-secret" not in str(caught.value)


def test_frontier_timeout_becomes_model_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = OpenAIChat(
        base_url="http://frontier.invalid", model="m", api_key=None, timeout_seconds=1,
        max_output_tokens=10, transport=httpx.MockTransport(handler),
    )  # fmt: skip
    with pytest.raises(ModelUnavailable, match="timed out"):
        client.answer("hi")


def test_openai_compatible_reading_maps_a_misspelled_intent_to_the_vocabulary() -> None:
    from kittylab.adapters.llm.openai_local import _parse

    assert _parse('{"intent": "printer_pause", "device": "voron-24", "args": {}}') == (
        "print_pause", "voron-24", {}
    )  # fmt: skip
    assert _parse('{"intent": "pause", "device": "voron-24", "ar') == (
        "print_pause",
        "voron-24",
        {},
    )
    assert _parse('{"intent": "make coffee", "device": null}') is None
