"""People: who someone is (users, API tokens) and where they are (presence in zones).

No port of its own (``ports`` says why): presence sources push to the API (UniFi Access
webhook).

Modules:

- ``identity``: users and API tokens: ``create_user``, ``issue_token``, ``authenticate``
- ``role_grants``: the safety and admin roles asked for over the API, confirmed by a
  second person (issue 13): ``create_user``, ``update_user``, ``confirm``, ``refuse``
- ``presence``: ``record_manual``, ``record_confirmed``, ``record_unifi``,
  ``record_override``, ``counts_as_present``, ``occupancy``
"""
