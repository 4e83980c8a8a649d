"""The bus ACL as data: who may publish, subscribe to and receive which topics (issue 13)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kittylab.adapters.bus.credentials import Identities, hash_password, verify_password
from kittylab.domain import topics
from kittylab.domain.bus_acl import (
    BusIdentity,
    IdentityKind,
    covers,
    may_publish,
    may_receive,
    may_subscribe,
)

SERVICE = BusIdentity("kittylab-service", IdentityKind.SERVICE)
WORKER = BusIdentity("kittylab-worker", IdentityKind.WORKER)
DOOR = BusIdentity("device-door", IdentityKind.DEVICE, frozenset({"door"}))
SIMULATOR = BusIdentity("kittylab-simulator", IdentityKind.SIMULATOR, frozenset({"prusa", "door"}))
DETECTOR = BusIdentity("detector-obico", IdentityKind.DETECTOR)
NOBODY = None


@pytest.mark.parametrize("who", [NOBODY, DOOR, SIMULATOR, DETECTOR])
def test_only_kittylabs_own_identities_may_command_a_device(who: BusIdentity | None) -> None:
    assert not may_publish(who, topics.device_command("welder"))
    assert not may_publish(who, topics.device_command("door"))


@pytest.mark.parametrize("who", [SERVICE, WORKER])
def test_the_service_and_its_workers_command_any_device(who: BusIdentity) -> None:
    assert may_publish(who, topics.device_command("welder"))
    assert may_publish(who, topics.conversation_context("c1"))


def test_a_device_publishes_only_its_own_state_replies_and_telemetry() -> None:
    assert may_publish(DOOR, topics.device_state("door"))
    assert may_publish(DOOR, topics.device_reply("door"))
    assert may_publish(DOOR, topics.telemetry("door", "temp"))
    assert not may_publish(DOOR, topics.device_state("welder"))
    assert not may_publish(DOOR, topics.device_reply("welder"))
    assert not may_publish(DOOR, topics.telemetry("welder", "temp"))
    assert not may_publish(DOOR, "kitty/monitor/job1")
    assert not may_publish(DOOR, topics.conversation_context("c1"))


def test_a_device_reads_only_its_own_commands() -> None:
    assert may_subscribe(DOOR, topics.device_command("door"))
    assert not may_subscribe(DOOR, topics.DEVICE_COMMAND_WILDCARD)
    assert not may_subscribe(DOOR, "kitty/#")
    assert not may_subscribe(DOOR, "#")
    assert not may_subscribe(DOOR, topics.device_command("welder"))
    assert not may_receive(DOOR, topics.device_command("welder"))


def test_conversation_context_is_for_the_services_own_clients_only() -> None:
    ctx = topics.conversation_context("c1")
    for outsider in (NOBODY, DOOR, SIMULATOR, DETECTOR):
        assert not may_publish(outsider, ctx)
        assert not may_subscribe(outsider, "kitty/ctx/#")
        assert not may_receive(outsider, ctx)
    assert may_subscribe(SERVICE, "kitty/ctx/#")


def test_the_simulator_subscribes_to_all_commands_but_receives_only_its_devices() -> None:
    assert may_subscribe(SIMULATOR, topics.DEVICE_COMMAND_WILDCARD)
    assert may_receive(SIMULATOR, topics.device_command("prusa"))
    assert not may_receive(SIMULATOR, topics.device_command("welder"))
    assert may_publish(SIMULATOR, topics.device_state("door"))
    assert not may_publish(SIMULATOR, topics.device_state("welder"))
    assert not may_publish(SIMULATOR, topics.device_command("prusa"))


def test_only_kittylab_tells_the_simulator_its_devices_and_only_the_simulator_reads_them() -> None:
    for simulator in (SIMULATOR, BusIdentity("kittylab-simulator", IdentityKind.SIMULATOR)):
        assert may_subscribe(simulator, topics.SIMULATED_DEVICES)
        assert may_receive(simulator, topics.SIMULATED_DEVICES)
        assert not may_publish(simulator, topics.SIMULATED_DEVICES)
    for outsider in (NOBODY, DOOR, DETECTOR):
        assert not may_publish(outsider, topics.SIMULATED_DEVICES)
        assert not may_receive(outsider, topics.SIMULATED_DEVICES)
    assert may_publish(SERVICE, topics.SIMULATED_DEVICES)


def test_a_detector_publishes_monitor_events_only() -> None:
    assert may_publish(DETECTOR, "kitty/monitor/job1")
    assert not may_publish(DETECTOR, topics.device_state("door"))
    assert not may_subscribe(DETECTOR, "kitty/#")


@pytest.mark.parametrize("who", [NOBODY, SERVICE, WORKER, DOOR, SIMULATOR])
def test_only_a_detector_may_publish_a_monitor_event(who: BusIdentity | None) -> None:
    # A monitor event pauses a print and is kept as evidence: it counts only from a
    # detector, so not even KittyLab's own clients may speak for one.
    assert not may_publish(who, topics.monitor("job1"))
    assert may_publish(DETECTOR, topics.monitor("job1"))


@pytest.mark.parametrize("who", [SERVICE, WORKER])
def test_kittylabs_own_clients_still_read_monitor_events_and_publish_the_rest(
    who: BusIdentity,
) -> None:
    assert may_subscribe(who, topics.MONITOR_WILDCARD)
    assert may_receive(who, topics.monitor("job1"))
    for topic in (
        topics.device_state("door"),
        topics.telemetry("door", "temp"),
        topics.job("j1"),
        topics.safety("e1"),
        topics.zone_stop("z1"),
        topics.LAB_STOP,
    ):
        assert may_publish(who, topic), topic


def test_wildcards_and_system_topics_are_never_publishable() -> None:
    assert not may_publish(SERVICE, "kitty/devices/+/cmd")
    assert not may_publish(SERVICE, "kitty/#")
    assert not may_publish(SERVICE, "")
    assert not may_subscribe(DOOR, "$SYS/#")


@pytest.mark.parametrize(
    ("pattern", "topic_filter", "expected"),
    [
        ("kitty/#", "kitty", True),
        ("kitty/#", "kitty/a/b", True),
        ("kitty/#", "kitty/#", True),
        ("kitty/+/cmd", "kitty/x/cmd", True),
        ("kitty/+/cmd", "kitty/+/cmd", True),
        ("kitty/x/cmd", "kitty/+/cmd", False),
        ("kitty/+/cmd", "kitty/#", False),
        ("kitty/+/cmd", "kitty/x/cmd/y", False),
        ("kitty/x", "kitty", False),
        ("#", "$SYS/broker", False),
    ],
)
def test_filter_coverage(pattern: str, topic_filter: str, expected: bool) -> None:
    assert covers(pattern, topic_filter) is expected


def test_the_identities_file_is_private_and_keeps_only_hashes_of_device_passwords(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mqtt" / "identities.json"
    lab = Identities.load(path)
    assert lab.ensure_own(["prusa", "door"])
    shown = lab.issue_device("welder")
    lab.save()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert shown.password not in path.read_text()
    again = Identities.load(path)
    welder = again.authenticate(shown.username, shown.password)
    assert welder == BusIdentity("device-welder", IdentityKind.DEVICE, frozenset({"welder"}))
    assert again.authenticate(shown.username, "guess") is None
    assert again.authenticate(None, None) is None
    service = again.own(IdentityKind.SERVICE)
    assert again.authenticate(service.username, service.password) == BusIdentity(
        "kittylab-service", IdentityKind.SERVICE
    )
    assert not again.ensure_own(["door", "prusa"])  # nothing to change: no rewrite


def test_password_hashes_are_mosquittos_pbkdf2_sha512_format() -> None:
    # A line written by mosquitto_passwd 2.0.11 for "s3cret".
    hashed = (
        "$7$101$dM9ugfGBinIKoHeo$OmwI0OuIkP03fr5YtXT2ixZRdUmi6V3brgHXooi1S7/Yi+RKoWVUgMyzRWSa"
        "7hyy2+ZDOjBYOO4zo+Xom1riUA=="
    )
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cre", hashed)
    assert verify_password("pw", hash_password("pw"))
    assert not verify_password("pw", "$6$salt$notours")
