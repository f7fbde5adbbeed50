"""Which network addresses an outgoing HTTP request (webhook, SMS gateway) may reach.

A webhook URL comes from configuration, but a URL that reaches the PBX's own services, the
LAN or a cloud metadata endpoint turns callbackd into a proxy into places it has no business
in (SSRF). Addresses are classified here, purely; resolving names is the caller's job, done
once when the configuration is loaded and again for every request (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata services: never reachable unless listed in allowed_networks.
METADATA_ADDRESSES: frozenset[IpAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)

# Reasons an address is refused.
METADATA = "metadata"
MULTICAST = "multicast"
UNSPECIFIED = "unspecified"
LOOPBACK = "loopback"
PRIVATE = "private"
LINK_LOCAL = "link-local"
UNIQUE_LOCAL = "unique-local"
NOT_GLOBAL = "not globally routable"

# Refused even with allow_private_targets (only allowed_networks opens them).
ALWAYS_REFUSED = frozenset({METADATA, MULTICAST, UNSPECIFIED})


@dataclass(frozen=True)
class TargetPolicy:
    """``allow_private`` opens loopback, private, link-local and unique-local ranges;
    ``allowed_networks`` opens exactly the networks listed (metadata addresses included)."""

    allow_private: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()

    def refusal(self, address: IpAddress) -> str | None:
        """Why *address* may not be reached, or None if it may."""
        address = _unmapped(address)
        if any(address in network for network in self.allowed_networks):
            return None
        reason = classify(address)
        if reason is None:
            return None
        if self.allow_private and reason not in ALWAYS_REFUSED:
            return None
        return reason

    def first_refusal(self, addresses: Iterable[IpAddress]) -> tuple[IpAddress, str] | None:
        """The first refused address of a name's resolution (all must pass)."""
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                return address, reason
        return None


def _unmapped(address: IpAddress) -> IpAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def classify(address: IpAddress) -> str | None:
    """The category that makes *address* unfit as a public target, or None if it is global."""
    address = _unmapped(address)
    if address in METADATA_ADDRESSES:
        return METADATA
    if address.is_multicast:
        return MULTICAST
    if address.is_unspecified:
        return UNSPECIFIED
    if address.is_loopback:
        return LOOPBACK
    if address.is_link_local:
        return LINK_LOCAL
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return UNIQUE_LOCAL
    if address.is_private:
        return PRIVATE
    if not address.is_global:
        return NOT_GLOBAL
    return None


_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


def parse_address(text: str) -> IpAddress | None:
    """*text* as an IP address (brackets and IPv6 zone ids tolerated), or None for a name."""
    candidate = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None
