"""Safety rules, pure: policy evaluation, approval signatures, the audit chain.

Nothing here touches a database, the network or a clock of its own; the services feed it
facts and act on its answers, so every rule is unit-tested without a server."""
