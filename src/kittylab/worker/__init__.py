"""The background worker: an entrypoint, like ``api/`` and ``cli/``.

Its tasks call the use cases of every capability, which is why they live here and not in
``adapters/jobs`` (procrastinate's side: the queue that defers jobs by name, the table of
deferred tasks, stalled-job recovery, queue metrics), which imports no use case.

Modules:

- ``tasks``: the tasks as a procrastinate blueprint (``job_blueprint``), what they need
  from the application (``JobContext``), the periodic schedules (``PERIODIC``)
- ``run``: the worker's app (``build_job_app``), ``run_worker`` and ``supervise_worker``
  (``WorkerState``), run by ``kittylab serve`` and ``kittylab worker``
"""
