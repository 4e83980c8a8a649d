"""Devices: commands from request to confirmation, the driver port, state and telemetry.

Every request for a command goes through ``requests.request_command``: checked and
recorded (``dispatch.submit``) in the caller's unit of work, its dispatch job (or, held for
approval, its announcement) registered for after the commit; then claimed and sent once by its
integration's driver (``dispatch.dispatch``), and confirmed by the device's own state.
Adapters (``kittylab.adapters.devices``) implement ``ports``.

Modules:

- ``commands``: command records: ``create_command``, ``advance_command``
- ``dispatch``: ``submit``, ``dispatch`` (claimed before sent), ``unfinished``
- ``maintenance``: ``mark_silent_devices_offline``, ``purge_old_telemetry``
- ``poller``: ``DevicePoller``: the single poller of devices that are asked
- ``requests``: ``request_command``, the one use case for asking a device to act
- ``ports``: the driver port: ``DeviceDriver``, ``DeviceTarget``, ``PrintFileUploader``
- ``telemetry``: ``store_batch``, ``store_stream``, ``latest_state``
- ``telemetry_ingest``: ``TelemetryIngest``: telemetry from the bus, in batches
"""
