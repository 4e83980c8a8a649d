"""Who may publish and subscribe what on the lab's MQTT bus: the topic ACL as data (issue 13).

Every bus client has an identity (a broker username) of one kind:

- ``service`` and ``worker``: KittyLab's own processes. Only they may publish a device's
  ``cmd`` (so a command exists only with a command row and, for a hazard, an approval), the
  conversation context ``kitty/ctx/*``, job progress and safety events; they may read
  everything under ``kitty/`` and publish all of it but monitor events.
- ``device``: one device. It publishes only its own ``state``, ``reply`` and
  ``kitty/telemetry/<id>/…``, and reads only its own ``cmd``.
- ``simulator``: the demo lab's simulators, one client acting for the simulated devices it
  lists, with exactly those devices' rights. It may *subscribe* to the ``cmd`` wildcard (the
  fleet takes every command with one subscription), but the broker delivers it only the
  commands of its own devices (``may_receive``). It also reads the list of devices it is
  to simulate, ``kitty/simulator/devices``, which only KittyLab's own processes publish.
- ``detector``: a print-failure detector. It publishes monitor events
  ``kitty/monitor/<job>`` only, and only a detector does: not even KittyLab's own
  processes publish there, so a monitor event the service hears came from a detector.

Anyone else (no username, unknown username, wrong password) is refused at connect. The
rules are pure; the embedded broker's plugin (``adapters/bus/broker.py``) and the Mosquitto
ACL writer (``adapters/bus/mosquitto.py``) both apply them, so both brokers enforce the
same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kittylab.domain import topics


class IdentityKind(StrEnum):
    SERVICE = "service"
    WORKER = "worker"
    SIMULATOR = "simulator"
    DEVICE = "device"
    DETECTOR = "detector"


OWN_KINDS = frozenset({IdentityKind.SERVICE, IdentityKind.WORKER})
"""KittyLab's own processes: the only ones that may command a device."""

_OWN_TREES = ("devices", "telemetry", "ctx", "jobs", "safety", "zones", "lab", "simulator")
"""Every ``kitty/<tree>/…`` KittyLab's own processes publish on. A new tree in ``topics``
must be added here, or the brokers drop its messages (``tests/unit/test_bus_acl.py``)."""
_OWN_PUBLISH = tuple(f"{topics.ROOT}/{tree}/#" for tree in _OWN_TREES)
"""KittyLab's own processes are the bus's trust root: they may command any device, so
letting them publish the rest of KittyLab's topics (a simulator sharing the service's
client in tests, a state relayed from a polled driver) grants nothing more. All but one:
``kitty/monitor/<job>`` is a detector's word about a print (it pauses the print and becomes
its evidence), and it counts only from a detector identity. The tree is left out rather
than denied because Mosquitto's ``topic deny`` would also stop the service reading it."""
_OWN_READ = (f"{topics.ROOT}/#",)


@dataclass(frozen=True)
class BusIdentity:
    """A broker username and what it stands for. ``devices`` are external ids: the one
    device of a ``device`` identity, the simulated devices of a ``simulator``."""

    username: str
    kind: IdentityKind
    devices: frozenset[str] = field(default_factory=frozenset)


def device_publish_patterns(external_id: str) -> tuple[str, ...]:
    """What a device publishes: its own state, replies and telemetry."""
    return (
        topics.device_state(external_id),
        topics.device_reply(external_id),
        f"{topics.ROOT}/telemetry/{external_id}/#",
    )


def publish_patterns(identity: BusIdentity) -> tuple[str, ...]:
    """Topic filters covering every topic ``identity`` may publish on."""
    if identity.kind in OWN_KINDS:
        return _OWN_PUBLISH
    if identity.kind is IdentityKind.DETECTOR:
        return (topics.MONITOR_WILDCARD,)
    return tuple(p for d in sorted(identity.devices) for p in device_publish_patterns(d))


def receive_patterns(identity: BusIdentity) -> tuple[str, ...]:
    """Topic filters covering every topic whose messages ``identity`` may receive."""
    if identity.kind in OWN_KINDS:
        return _OWN_READ
    if identity.kind is IdentityKind.DETECTOR:
        return ()
    commands = tuple(topics.device_command(d) for d in sorted(identity.devices))
    if identity.kind is IdentityKind.SIMULATOR:
        return (topics.SIMULATED_DEVICES, *commands)
    return commands


def subscribe_patterns(identity: BusIdentity) -> tuple[str, ...]:
    """Topic filters ``identity`` may subscribe to (a subscription must lie inside one)."""
    if identity.kind is IdentityKind.SIMULATOR:
        # Delivery is narrowed to its own devices by ``may_receive``; with none yet, the
        # wildcard delivers nothing until the lab gives it some.
        return (topics.SIMULATED_DEVICES, topics.DEVICE_COMMAND_WILDCARD)
    return receive_patterns(identity)


def covers(pattern: str, topic_filter: str) -> bool:
    """Does every topic matching ``topic_filter`` also match ``pattern``?

    With a plain topic name as ``topic_filter`` this is ordinary filter matching. Topics
    starting with ``$`` are never matched by a leading wildcard (MQTT 4.7.2)."""
    want, have = pattern.split("/"), topic_filter.split("/")
    if topic_filter.startswith("$") and want[0] in ("+", "#"):
        return False
    for index, level in enumerate(want):
        if level == "#":
            return index <= len(have)  # "a/#" also matches "a"
        if index >= len(have):
            return False
        if have[index] == "#":
            return False  # the filter reaches further than a single-level pattern
        if level == "+":
            continue
        if have[index] != level:
            return False  # a literal level: the filter's "+" would match other names
    return len(want) == len(have)


def _is_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic and "\0" not in topic


def may_publish(identity: BusIdentity | None, topic: str) -> bool:
    """May ``identity`` publish on ``topic`` (a topic name, wildcards refused)?"""
    if identity is None or not _is_topic_name(topic):
        return False
    return any(covers(p, topic) for p in publish_patterns(identity))


def may_subscribe(identity: BusIdentity | None, topic_filter: str) -> bool:
    if identity is None or not topic_filter:
        return False
    return any(covers(p, topic_filter) for p in subscribe_patterns(identity))


def may_receive(identity: BusIdentity | None, topic: str) -> bool:
    """May a message on ``topic`` be delivered to ``identity`` (checked per message, so a
    wildcard subscription cannot read beyond the identity's rights)?"""
    if identity is None or not _is_topic_name(topic):
        return False
    return any(covers(p, topic) for p in receive_patterns(identity))
