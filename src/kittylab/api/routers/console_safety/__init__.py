"""The console's safety desk (issue 17, item 5): ``/safety/…`` pages and their
``/console/safety/…`` fragments and actions, one module per tab:

- ``approvals.py``      ``/safety``: held commands and held lab changes; approve with a
                        passkey, deny with a reason; the recent decisions
- ``confirmations.py``  ``/safety/confirmations``: approval keys and role grants waiting
                        for a second person; your passkeys as approval keys
- ``locks.py``          ``/safety/locks``: the locks board
- ``presence.py``       ``/safety/presence``: the presence board
- ``audit.py``          ``/safety/audit``: the audit log and its hash chain's state

``desk.py`` holds what they share (the viewer as the rules see the request, the tabs).
``router`` includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from kittylab.api.routers.console_safety import approvals, audit, confirmations, locks, presence

router = APIRouter(include_in_schema=False)
for _module in (approvals, confirmations, locks, presence, audit):
    router.include_router(_module.router)
