"""Prometheus metrics of the query path (``kittylab_query_…``)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Histogram

from kittylab.domain.enums import Tier

REQUESTS = Counter(
    "kittylab_query_requests_total", "Query requests by answering tier and outcome.",
    ["tier", "outcome"],
)  # fmt: skip
LATENCY = Histogram(
    "kittylab_query_latency_seconds",
    "Query latency by answering tier.",
    ["tier"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COST = Counter("kittylab_query_cost_usd_total", "Spend on model tiers in USD.", ["tier"])
for _tier in Tier:  # at 0 from the start: spend is a rise from 0, not a new series
    COST.labels(_tier.value)
CACHE_HITS = Counter("kittylab_query_cache_hits_total", "Questions answered from the cache.")
CACHE_MISSES = Counter(
    "kittylab_query_cache_misses_total", "Cacheable questions not found in the cache."
)


def observe(tier: Tier, outcome: str, seconds: float, cost: Decimal) -> None:
    REQUESTS.labels(tier.value, outcome).inc()
    LATENCY.labels(tier.value).observe(seconds)
    if cost:
        COST.labels(tier.value).inc(float(cost))
