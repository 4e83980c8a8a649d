"""Background jobs with procrastinate, on the same PostgreSQL as the records.

``build_job_app`` + ``run_worker`` run the tasks; ``ProcrastinateQueue`` defers them from
synchronous code. Importing this package opens no connection.
"""

from kittylab.adapters.jobs.queue import (
    JobQueueUnavailable,
    ProcrastinateQueue,
    build_job_app,
)
from kittylab.adapters.jobs.recovery import Recovery, recover_stalled_jobs
from kittylab.adapters.jobs.tasks import JobContext, check_heartbeat_settings, job_blueprint
from kittylab.adapters.jobs.worker import run_worker

__all__ = [
    "JobContext",
    "JobQueueUnavailable",
    "ProcrastinateQueue",
    "Recovery",
    "build_job_app",
    "check_heartbeat_settings",
    "job_blueprint",
    "recover_stalled_jobs",
    "run_worker",
]
