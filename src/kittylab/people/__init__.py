"""People: who someone is (users, API tokens) and where they are (presence in zones).

No port of its own: presence sources push to the API (UniFi Access webhook).

Modules:

- ``identity``: users and API tokens: ``create_user``, ``issue_token``, ``authenticate``
- ``presence``: ``record_manual``, ``record_unifi``, ``record_override``, ``present_users``
"""
