"""Which addresses a callback may reach: loopback, private, link-local and other special-purpose
ones need consent (`allow_private_targets`, which lifts the whole guard).

An IPv6 address that carries an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
`::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) is judged by the IPv4
address it carries, since that is the host a packet to it ends up at: `64:ff9b::a9fe:a9fe` is
the link-local 169.254.169.254 (cloud metadata) behind a NAT64 gateway, and `64:ff9b::808:808`
is the public 8.8.8.8.
"""

from __future__ import annotations

import ipaddress

from daemon.errors import TargetRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_KEY = "allow_private_targets"  # the subscription's key that lifts the guard

# What each range is, as a refusal names it. The first match names an address, so a narrower
# range comes before a wider one that holds it (broadcast before reserved).
_GUARDED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a loopback address", ("127.0.0.0/8", "::1/128")),
    (
        "a private address",
        # 64:ff9b:1::/48 is NAT64 for local use (RFC 8215): whatever it carries is local.
        ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "64:ff9b:1::/48"),
    ),
    ("a link-local address", ("169.254.0.0/16", "fe80::/10")),  # incl. cloud metadata
    ("a site-local address", ("fec0::/10",)),  # deprecated (RFC 3879), still routed on some LANs
    ("a shared (CGNAT) address", ("100.64.0.0/10",)),
    ("an unspecified address", ("0.0.0.0/8", "::/128")),  # 0.0.0.0 reaches this host
    ("a benchmarking address", ("198.18.0.0/15", "2001:2::/48")),
    ("a multicast address", ("224.0.0.0/4", "ff00::/8")),
    ("a broadcast address", ("255.255.255.255/32",)),
    (
        "a documentation address",
        ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
    ),
    ("a reserved address", ("192.0.0.0/24", "240.0.0.0/4", "100::/64")),
)
_NETWORKS = tuple(
    (kind, tuple(ipaddress.ip_network(network) for network in networks))
    for kind, networks in _GUARDED
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d (deprecated, RFC 4291 2.5.5.1)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix (RFC 6052)


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, with the name of the wrapping, or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF), "NAT64"
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        return ipaddress.IPv4Address(int(address)), "IPv4-compatible"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address.teredo is not None:
        return address.teredo[1], "Teredo"  # (server, client): packets go to the client
    return None


def _range_kind(address: Address) -> str | None:
    for kind, networks in _NETWORKS:
        if any(address in network for network in networks):
            return kind
    return None


def guarded_kind(address: Address) -> str | None:
    """What kind of guarded address this is ("a loopback address"), or None if public. An IPv6
    address carrying an IPv4 one is what that IPv4 address is, said with its wrapping
    ("a link-local address (169.254.169.254 inside NAT64)")."""
    if isinstance(address, ipaddress.IPv6Address):
        if (embedded := embedded_ipv4(address)) is not None:
            inner, wrapping = embedded
            kind = _range_kind(inner)
            if kind is None or wrapping == "IPv4-mapped":
                return kind  # ::ffff:127.0.0.1 is simply 127.0.0.1 to the socket API
            return f"{kind} ({inner} inside {wrapping})"
    return _range_kind(address)


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
