"""Conversation: a turn is understood, routed to the cheapest confident tier, acted on
or answered, and leaves exactly one routing decision.

Subpackages ``understanding`` (text → intent, pure) and ``routing`` (tier choice,
prices, budgets, answer cache, pure).

Modules:

- ``actions``: a turn's effects: ``DispatchingSubmitter``, ``ConversationCad``
- ``lab``: reading the lab for a turn: vocabulary, hazards, today's spend
- ``metrics``: ``observe``: the ``kittylab_query_…`` metrics
- ``ports``: ``Answerer``, ``CommandSubmitter``, ``ContextPublisher``, ``CadStarter``
- ``query``: ``QueryService.handle``: one turn
- ``routing/``: Choosing the tier that answers a request (local, mcp, frontier)
- ``routing_log``: ``record_routing_decision``: the append-only routing log
- ``sessions``: ``remove_inactive_sessions``
- ``understanding/``: Text → intent
"""
