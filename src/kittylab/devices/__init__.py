"""Devices: commands from request to confirmation, the driver port, state and telemetry.

A command is checked and recorded (``dispatch.submit``), claimed and sent once by its
integration's driver (``dispatch.dispatch``), and confirmed by the device's own state.
Adapters (``kittylab.adapters.devices``) implement ``ports``.

Modules:

- ``commands``: command records: ``create_command``, ``advance_command``
- ``dispatch``: ``submit``, ``dispatch`` (claimed before sent), ``unfinished``
- ``maintenance``: ``mark_silent_devices_offline``, ``purge_old_telemetry``
- ``poller``: ``DevicePoller``: the single poller of devices that are asked
- ``ports``: the driver port: ``DeviceDriver``, ``DeviceTarget``, ``PrintFileUploader``
- ``telemetry``: ``store_batch``, ``store_stream``, ``latest_state``
- ``telemetry_ingest``: ``TelemetryIngest``: telemetry from the bus, in batches
"""
