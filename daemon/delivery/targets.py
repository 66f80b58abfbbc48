"""Which addresses a callback may reach: loopback, private and link-local ones need consent."""

from __future__ import annotations

import ipaddress

from daemon.errors import TargetRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_KEY = "allow_private_targets"  # the subscription's key that lifts the guard

# What each range is, as a refusal names it. Order matters only for readability.
_GUARDED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a loopback address", ("127.0.0.0/8", "::1/128")),
    ("a private address", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("a link-local address", ("169.254.0.0/16", "fe80::/10")),  # incl. cloud metadata
    ("a shared (CGNAT) address", ("100.64.0.0/10",)),
    ("an unspecified address", ("0.0.0.0/8", "::/128")),  # 0.0.0.0 reaches this host
)
_NETWORKS = tuple(
    (kind, tuple(ipaddress.ip_network(network) for network in networks))
    for kind, networks in _GUARDED
)


def guarded_kind(address: Address) -> str | None:
    """What kind of guarded address this is ("a loopback address"), or None if public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind, networks in _NETWORKS:
        if any(address in network for network in networks):
            return kind
    return None


def literal(host: str) -> Address | None:
    """The address when `host` is an IP literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(host: str) -> None:
    """Refuse a guarded IP literal; a name is checked once resolved (`check_resolved`)."""
    address = literal(host)
    if address is not None and (kind := guarded_kind(address)) is not None:
        raise TargetRefused(
            str(address),
            kind,
            f"refused: callback address {address} is {kind}; set {ALLOW_KEY} = true to allow it",
        )


def check_resolved(addresses: list[str]) -> list[str]:
    """The resolved addresses a guarded callback may use; refuses when none is left."""
    allowed = [a for a in addresses if guarded_kind(ipaddress.ip_address(a)) is None]
    if not allowed:
        first = ipaddress.ip_address(addresses[0])
        kind = guarded_kind(first) or "a guarded address"
        raise TargetRefused(
            str(first),
            kind,
            f"refused: callback resolves to {first}, {kind}; set {ALLOW_KEY} = true to allow it",
        )
    return allowed
