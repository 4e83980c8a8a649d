"""Choosing the tier that answers a request (local, mcp, frontier): confidence thresholds,
price table, per-user daily budgets, offline mode and the answer cache. Pure: no I/O."""
