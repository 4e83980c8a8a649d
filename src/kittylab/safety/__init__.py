"""Safety: hazardous actions wait for signed approvals; locks; keys; the audit chain.

Two layers. The rules are pure (no database, network or clock of their own) and
unit-tested without a server: ``policy``, ``lockout``, ``signatures``,
``approval_payload``, ``audit_chain``, ``webhook_signature``. The use cases read the
facts, apply the rules' answers and leave a record: ``workflow``, ``locks``, ``keys``.
Fail-closed: an error while evaluating a hazardous action refuses it.

Modules:

- ``approval_payload``: (pure) ``ApprovalPayload``: the exact bytes an approver signs
- ``audit_chain``: (pure) the audit log's hash chain: ``entry_hash``, ``verify``
- ``event_details``: a safety event's ``details``, typed: ``EventDetails``, ``read``,
  ``write``
- ``held``: a held command for its requester: ``HeldCommand.pending_hazard`` (a
  ``PendingHazard``), one shape for every route
- ``keys``: approver keys: ``add_key``, ``revoke_key``, ``verify_approval_signature``
- ``lockout``: (pure) the lock rules: ``lock_refusal``, ``removal_refusal``
- ``locks``: lockout/tagout on the record: ``place``, ``remove``, ``active_locks``
- ``ports``: ``HeldChange``, what an event holds other than a command; the shared
  ports safety uses
- ``policy``: (pure) ``evaluate`` → ``Allow`` | ``NeedsApproval`` | ``Deny``
- ``signatures``: (pure) approver keys and signatures: ``parse_public_key``, ``verify``
- ``webhook_signature``: (pure) UniFi Access webhook signatures: ``verify``
- ``workflow``: held hazardous commands: ``hold``, ``approve``, ``deny``, ``expire_due``,
  ``announce`` (on ``kitty/safety/<eventId>`` once the unit of work commits)
"""
