"""Pure parts of the delivery guard and of URL masking, table-driven."""

from __future__ import annotations

import ipaddress

import pytest

from daemon import redact
from daemon.delivery import targets
from daemon.errors import TargetRefused


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/p", "https://hooks.example.com/p"),
        ("https://u:PASSWORD@hooks.example.com/p", "https://***@hooks.example.com/p"),
        ("ftp://u:PASSWORD@host/x", "ftp://***@host/x"),
        ("https://TOKEN@h:8443/p?x=1", "https://***@h:8443/p?x=***"),
        ("https://h/p?token=abc&sig=def&flag", "https://h/p?token=***&sig=***&***"),
        ("https://h/p#secret", "https://h/p#***"),
        ("postgresql+psycopg://app:pw@db/x", "postgresql+psycopg://***@db/x"),
        ("not a url", "not a url"),
        ("sqlite:////var/lib/pdt/db.sqlite", "sqlite:////var/lib/pdt/db.sqlite"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
    ],
)
def test_urls_are_shown_without_userinfo_or_query_values(url: str, shown: str) -> None:
    assert redact.url(url) == shown


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("fc00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.127.255.255", "a shared (CGNAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("8.8.8.8", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("2001:4860:4860::8888", None),
        # Special-purpose IPv4 and IPv6 ranges.
        ("198.18.0.1", "a benchmarking address"),
        ("198.19.255.255", "a benchmarking address"),
        ("198.20.0.1", None),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "a broadcast address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.1", "a documentation address"),
        ("2001:db8::1", "a documentation address"),
        ("fec0::1", "a site-local address"),
        ("64:ff9b:1::a9fe:a9fe", "a private address"),
        # IPv6 carrying IPv4: judged by the IPv4 address it carries.
        ("::ffff:169.254.169.254", "a link-local address"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::169.254.169.254", "a link-local address (169.254.169.254 inside NAT64)"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (169.254.169.254 inside NAT64)"),
        ("64:ff9b::7f00:1", "a loopback address (127.0.0.1 inside NAT64)"),
        ("64:ff9b::808:808", None),
        ("2002:a9fe:a9fe::1", "a link-local address (169.254.169.254 inside 6to4)"),
        ("2002:0a00:0001:1::1", "a private address (10.0.0.1 inside 6to4)"),
        ("2002:0808:0808::1", None),
        ("::169.254.169.254", "a link-local address (169.254.169.254 inside IPv4-compatible)"),
        ("::127.0.0.1", "a loopback address (127.0.0.1 inside IPv4-compatible)"),
        ("::8.8.8.8", None),
        # Teredo: the client's address is the last 32 bits, inverted.
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a documentation address (192.0.2.45 inside "
         "Teredo)"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "a link-local address (169.254.169.254 inside "
         "Teredo)"),
    ],
)  # fmt: skip
def test_guarded_kinds(address: str, kind: str | None) -> None:
    assert targets.guarded_kind(ipaddress.ip_address(address)) == kind


def test_a_wrapped_metadata_address_is_refused_and_named() -> None:
    with pytest.raises(TargetRefused) as refused:
        targets.check_literal("[64:ff9b::a9fe:a9fe]")
    assert str(refused.value) == (
        "refused: callback address 64:ff9b::a9fe:a9fe is a link-local address "
        "(169.254.169.254 inside NAT64); set allow_private_targets = true to allow it"
    )
    with pytest.raises(TargetRefused):
        targets.check_resolved(["2002:a9fe:a9fe::", "::ffff:10.1.2.3"])
    assert targets.check_resolved(["64:ff9b::a9fe:a9fe", "64:ff9b::808:808"]) == [
        "64:ff9b::808:808"
    ]


def test_resolved_addresses_are_filtered_and_refused_when_none_is_left() -> None:
    assert targets.check_resolved(["10.0.0.1", "93.184.216.34"]) == ["93.184.216.34"]
    with pytest.raises(TargetRefused) as refused:
        targets.check_resolved(["127.0.0.1", "::1"])
    assert (refused.value.address, refused.value.kind) == ("127.0.0.1", "a loopback address")
    targets.check_literal("hooks.example.com")  # a name is checked once resolved
    targets.check_literal("93.184.216.34")
