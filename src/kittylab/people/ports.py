"""Ports of people: none of its own, on purpose.

People reads and writes only its records. Presence sources are not polled through a port:
they push to the API (the UniFi Access webhook, ``presence.record_unifi``; a check-in,
``presence.record_manual``), and passkey ceremonies are pure computation (``webauthn``).
The one way out is a notification: ``invites`` registers its delivery on the unit of work
through the shared ``JobQueue`` (``kittylab.ports``), the port every capability shares with
``MessageBus``.
"""
