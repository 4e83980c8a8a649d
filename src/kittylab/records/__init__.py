"""Records: the audit log, notifications and alerts, and the artifact store's port.

What the lab keeps and tells: every decision's audit entry, every message to a person
(durable, retried), and where files live.

Modules:

- ``alerts``: ``notify_person`` on every channel the lab has configured
- ``audit``: the hash-chained audit log: ``append``, ``search``, ``verify_chain``
- ``notifications``: durable notifications: ``enqueue``, ``deliver``, ``due_for_delivery``
- ``ports``: ``ArtifactStore`` (``validate_key``), ``NotificationSender``
"""
