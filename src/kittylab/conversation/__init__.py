"""Conversation: a turn is understood, routed to the cheapest confident tier, acted on
or answered, and leaves exactly one routing decision.

Subpackages ``understanding`` (text → intent, pure) and ``routing`` (tier choice,
prices, budgets, answer cache, pure).

Modules:

- ``actions``: a turn's effects: ``DispatchingSubmitter``, ``ConversationCad``
- ``events``: ``follow``: a conversation's new messages as they appear (issue 16)
- ``follow_up``: ``ReplyCloser``: a command's reply waits briefly for its outcome
- ``lab``: reading the lab for a turn: vocabulary, hazards, today's spend
- ``memory``: ``TurnMemory``: the query service's hooks that store and close each turn
- ``messages``: ``record_turn``, ``record_outcome``, ``purge_old_messages``: the stored
  conversation
- ``metrics``: ``observe``: the ``kittylab_query_…`` metrics
- ``projects``: projects grouping conversations, CAD jobs, artifacts and print jobs
- ``ports``: ``Answerer``, ``CommandSubmitter``, ``ContextPublisher``, ``CadStarter``
- ``query``: ``QueryService.handle``: one turn
- ``routing/``: Choosing the tier that answers a request (local, mcp, frontier)
- ``routing_log``: ``record_routing_decision``: the append-only routing log
- ``sessions``: ``remove_inactive_sessions``
- ``understanding/``: Text → intent
"""
