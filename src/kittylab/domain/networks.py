"""Where a request comes from, and whether the lab trusts that network (issue 13).

A request from outside the lab's trusted networks may read, never actuate, approve or
change anything safety-relevant, whatever its credential: a token copied off a tablet is
worth less on the internet than at the bench.

The origin of a request is the TCP peer's address, unless the peer is one of the lab's
configured reverse proxies; then it is the right-most address of ``X-Forwarded-For`` that
is not itself a configured proxy (each proxy appends the address it saw, so the entries
to the right are the ones the lab's own proxies wrote, and anything to the left of the
first foreign address could have been written by the client). When the origin cannot be
known it is ``None``, and ``None`` is never trusted:

- the peer is not an IP address (a Unix socket);
- a peer that is not a configured proxy sends forwarding headers: it is a proxy nobody
  told us about, and the address of its client is unknown (a reverse proxy on the same
  host would otherwise make every internet request look like loopback);
- a configured proxy does not say whom it forwards, or names something that is not an
  address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from kittylab.domain.errors import PermissionDenied

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

LOOPBACK_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
PRIVATE_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",  # IPv6 unique local addresses
    "fe80::/10",  # IPv6 link-local
)
DEFAULT_TRUSTED_NETWORKS: tuple[str, ...] = LOOPBACK_NETWORKS + PRIVATE_NETWORKS
"""Loopback and the private ranges a lab's own LAN uses: the quick start on 127.0.0.1
and a tablet on the lab's Wi-Fi can act; a request from a public address (a forwarded
port, a tunnel) can only read. A lab on a large shared network (a campus's 10/8) should
narrow this to its own subnets."""


class OutsideTrustedNetworks(PermissionDenied):
    """The request comes from outside the lab's trusted networks, and asks for more than a
    read (an actuation, an approval, a safety-relevant change)."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} is refused from outside the lab's trusted networks, whatever the "
            "credential: requests from there can only read. Ask from the lab's network "
            "(or its VPN); an admin lists the lab's networks in KITTYLAB_HTTP__TRUSTED_NETWORKS"
        )
        self.what = what


FORWARDING_HEADERS: tuple[str, ...] = ("x-forwarded-for", "forwarded", "x-real-ip")
"""Headers a proxy adds; from a peer that is not a configured proxy they make the origin
unknown. Only ``X-Forwarded-For`` is read for the address."""


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a peer or a forwarded entry (``[v6]`` brackets and an IPv4
    ``:port`` tolerated, IPv4-mapped IPv6 taken as IPv4), or ``None``."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]  # 192.0.2.1:51234
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """Whether binding or connecting to ``host`` stays on this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = parse_address(name)
    return address is not None and address.is_loopback


def within(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    """``address`` is in one of ``networks``; an unknown address is in none."""
    if address is None:
        return False
    return any(address.version == n.version and address in n for n in networks)


def origin(
    peer: str | None,
    forwarded_for: Sequence[str],
    *,
    forwarding_headers: bool,
    proxies: Sequence[IPNetwork],
) -> IPAddress | None:
    """The address the request comes from (see the module doc), or ``None`` if unknown.

    ``forwarded_for``: every ``X-Forwarded-For`` value, in the order received;
    ``forwarding_headers``: whether any of ``FORWARDING_HEADERS`` was sent at all."""
    address = parse_address(peer)
    if address is None:
        return None
    if not within(address, proxies):
        return None if forwarding_headers else address
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        found = parse_address(hop)
        if found is None:
            return None
        if not within(found, proxies):
            return found
    return None  # the proxy said nothing, or only named proxies


def trusted(
    peer: str | None,
    forwarded_for: Sequence[str],
    *,
    forwarding_headers: bool,
    proxies: Sequence[IPNetwork],
    networks: Sequence[IPNetwork],
) -> bool:
    """Whether the request comes from the lab's trusted networks."""
    found = origin(peer, forwarded_for, forwarding_headers=forwarding_headers, proxies=proxies)
    return within(found, networks)
