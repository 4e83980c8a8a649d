"""Background jobs with procrastinate, on the same PostgreSQL as the records.

``ProcrastinateQueue`` defers jobs from synchronous code, by the names of the one table of
deferred tasks (``deferrals``); the tasks themselves and the worker that runs them are an
entrypoint, ``kittylab.worker``: they call use cases, which no adapter does. Importing
this package opens no connection.
"""

from kittylab.adapters.jobs.queue import JobQueueUnavailable, ProcrastinateQueue
from kittylab.adapters.jobs.recovery import Recovery, recover_stalled_jobs

__all__ = [
    "JobQueueUnavailable",
    "ProcrastinateQueue",
    "Recovery",
    "recover_stalled_jobs",
]
