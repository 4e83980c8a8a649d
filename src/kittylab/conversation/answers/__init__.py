"""Answers from the lab's own state, locally, with no model (issue 16).

- ``questions``: ``recognize``: is the text a state question, and about what (pure)
- ``access``: ``read_refusal``: who may read a device's state (pure)
- ``facts``: the facts an answer is made of, and the ``Answer`` (pure data)
- ``wording``: facts into words, with their age (pure)
- ``reading``: the facts read from the records through the unit of work
- ``service``: ``StateAnswers``: recognise, refuse, refresh stale readings, answer
"""
