"""The simulator: the demo lab's devices as MQTT peers, nothing more (issue 14).

It runs as its own process (``kittylab simulate``, started by ``kittylab serve``) with no
database access: it learns its devices from ``kitty/simulator/devices``, takes commands
and publishes state on the same topics as a generic MQTT device, so commands to the demo
lab and its reports travel the path real equipment's do (docs/simulator.md).

Modules:

- ``devices``: stateful simulators of every device kind: ``build_simulator``
- ``fleet``: ``SimulatedFleet``, ``run_fleet``: the demo lab on the bus
- ``camera_view``: what a simulated camera sees, drawn as a PNG
- ``cameras``: ``CameraStudio``, ``serve_cameras``: the cameras' pictures on loopback
"""
