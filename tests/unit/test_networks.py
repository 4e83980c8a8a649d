"""Where a request comes from, and whether the lab trusts it (issue 13: a remote-network
token can read but not actuate or approve, whatever its credential)."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from uuid import uuid4

import pytest

from kittylab.domain.actuation import INTENT_CLASSES, IntentClass, authorise
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.networks import (
    DEFAULT_TRUSTED_NETWORKS,
    OutsideTrustedNetworks,
    is_loopback_host,
    origin,
    trusted,
)
from kittylab.domain.principal import Principal

NETWORKS = [ip_network(n) for n in DEFAULT_TRUSTED_NETWORKS]
PROXY = [ip_network("127.0.0.1/32")]


def _from(
    peer: str | None, *forwarded: str, proxies: list = PROXY, headers: bool | None = None
) -> bool:  # type: ignore[type-arg]
    return trusted(
        peer,
        list(forwarded),
        forwarding_headers=bool(forwarded) if headers is None else headers,
        proxies=proxies,
        networks=NETWORKS,
    )


@pytest.mark.parametrize(
    "peer",
    ["127.0.0.1", "::1", "10.1.2.3", "172.20.0.5", "192.168.1.20", "fd00::7", "::ffff:10.0.0.9"],
)
def test_loopback_and_private_addresses_are_trusted_by_default(peer: str) -> None:
    assert _from(peer, proxies=[])


@pytest.mark.parametrize(
    "peer", ["203.0.113.7", "8.8.8.8", "2001:db8::1", "100.64.0.1", None, "testclient", ""]
)
def test_public_unknown_and_non_ip_peers_are_not_trusted(peer: str | None) -> None:
    assert not _from(peer, proxies=[])


def test_a_proxy_nobody_configured_makes_the_origin_unknown() -> None:
    # nginx on the same host forwarding an internet request: the peer is loopback.
    assert not _from("127.0.0.1", "203.0.113.7", proxies=[])
    # Even naming a lab address: the header of an unconfigured peer is not believed.
    assert not _from("127.0.0.1", "10.0.0.5", proxies=[])
    # Forwarded / X-Real-IP alone count as proxy headers too.
    assert not _from("127.0.0.1", proxies=[], headers=True)


def test_a_configured_proxy_is_believed_for_the_hop_it_added_only() -> None:
    assert _from("127.0.0.1", "10.0.0.5")
    assert not _from("127.0.0.1", "203.0.113.7")
    # The client wrote "10.0.0.5" itself; the proxy appended the real address.
    assert not _from("127.0.0.1", "10.0.0.5, 203.0.113.7")
    assert not _from("127.0.0.1", "10.0.0.5", "203.0.113.7")
    # Two proxies of the lab in a row are skipped.
    chain = [ip_network("127.0.0.1/32"), ip_network("10.9.0.0/24")]
    assert origin(
        "127.0.0.1", ["203.0.113.7, 10.9.0.2"], forwarding_headers=True, proxies=chain
    ) == ip_address("203.0.113.7")


def test_a_configured_proxy_that_names_nobody_or_garbage_is_not_trusted() -> None:
    assert not _from("127.0.0.1")
    assert not _from("127.0.0.1", "unknown")
    assert not _from("127.0.0.1", "127.0.0.1")  # only proxies: the client is unknown


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "lab.example", "broker"])
def test_hosts_beyond_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def _remote(*roles: Role) -> Principal:
    return Principal(uuid4(), "someone", frozenset(roles), remote=True)


@pytest.mark.parametrize("intent", sorted(INTENT_CLASSES))
@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SAFETY, Role.ADMIN])
def test_from_outside_the_trusted_networks_any_role_reads_only(role: Role, intent: str) -> None:
    if INTENT_CLASSES[intent] is IntentClass.READ:
        authorise(_remote(role), intent)
        return
    with pytest.raises(OutsideTrustedNetworks) as refused:
        authorise(_remote(role), intent, owns_job_on_device=True)
    assert isinstance(refused.value, PermissionDenied)
    assert "trusted networks" in str(refused.value)


def test_a_manifest_intent_is_refused_from_outside_too() -> None:
    with pytest.raises(OutsideTrustedNetworks):
        authorise(_remote(Role.ADMIN), "vent_open")
