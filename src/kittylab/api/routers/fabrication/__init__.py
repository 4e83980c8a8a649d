"""``/api/fabrication``: print jobs from a file to a finished part, one router per
sub-prefix:

- ``files.py``           ``/api/fabrication/files``: uploading a print file
- ``jobs.py``            ``/api/fabrication/jobs``: queue, list, read, cancel print jobs
- ``printers.py``        ``/api/fabrication/printers``: a printer's bed confirmed clear
- ``snapshots.py``       ``/api/fabrication/jobs/{id}/snapshots``: a job's evidence
- ``monitor_events.py``  ``/api/fabrication/monitor-events`` and
                         ``/api/fabrication/jobs/{id}/monitor-events``: what monitors saw

``router`` includes them all (``callers.py`` holds who may use them)."""

from __future__ import annotations

from fastapi import APIRouter

from kittylab.api.routers.fabrication import files, jobs, monitor_events, printers, snapshots

router = APIRouter()
for _module in (files, jobs, printers, snapshots, monitor_events):
    router.include_router(_module.router)
