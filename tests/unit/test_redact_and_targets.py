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
    ],
)
def test_guarded_kinds(address: str, kind: str | None) -> None:
    assert targets.guarded_kind(ipaddress.ip_address(address)) == kind


def test_resolved_addresses_are_filtered_and_refused_when_none_is_left() -> None:
    assert targets.check_resolved(["10.0.0.1", "93.184.216.34"]) == ["93.184.216.34"]
    with pytest.raises(TargetRefused) as refused:
        targets.check_resolved(["127.0.0.1", "::1"])
    assert (refused.value.address, refused.value.kind) == ("127.0.0.1", "a loopback address")
    targets.check_literal("hooks.example.com")  # a name is checked once resolved
    targets.check_literal("93.184.216.34")
