"""The simulator: the demo lab's devices as MQTT peers, nothing more.

It takes commands and publishes state on the same topics as a generic MQTT device, so
commands to the demo lab travel the path commands to real equipment do.

Modules:

- ``devices``: stateful simulators of every device kind: ``build_simulator``
- ``fleet``: ``SimulatedFleet``, ``run_fleet``: the demo lab on the bus
"""
