"""Wall terminals in the console (issue 18, item 3): a tablet on a zone's wall.

- ``kiosk.py``    ``/terminal`` and ``/console/terminal/…``: what the tablet shows (its
                  pairing code while it waits; its zone once paired) and the tap of a
                  person's security key that checks them in and lets them act as themselves
- ``pairing.py``  ``/terminals`` and ``/console/terminals/…``: the admin's list, where a
                  tablet's code is confirmed for a zone, and revoked

``router`` includes both."""

from __future__ import annotations

from fastapi import APIRouter

from kittylab.api.routers.console_terminals import kiosk, pairing

router = APIRouter(include_in_schema=False)
for _module in (kiosk, pairing):
    router.include_router(_module.router)
