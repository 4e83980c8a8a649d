"""Monitoring: watching prints and acting on what is seen.

Telemetry rules and camera detectors (the rules are pure, in
``kittylab.domain.print_telemetry_rules`` and ``kittylab.domain.print_monitoring``)
become monitor events; a failure pauses the print and tells whoever started it.

Modules:

- ``follow_ups``: ``link``, ``alert_if_failed``: a pause that fails is alerted
- ``ingest``: ``MonitorIngest``: detector events from ``kitty/monitor/<job>``
- ``ports``: ``FailureDetector``, ``SnapshotSource`` and their errors
- ``reports``: ``report``: a monitor event, and the pause and notices it leads to
- ``watcher``: ``PrintWatcher``: telemetry rules and the detector on every print
"""
