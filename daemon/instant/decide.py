"""What to do with an account's webhooks at Pipedrive, given the listing and what should be
(pure: no I/O, table-tested).

Ours are told by their name, which says it belongs to this daemon, which installation (the
database's id: several installations may share one Pipedrive company) and which account:
`pipedrive-triggers <installation id> <account>`. A webhook with any other name is another
tool's (or another installation's) and is never touched, whatever its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

NAME_PREFIX = "pipedrive-triggers"
WANTED_EVENT = ("*", "*")  # every action on every object: the ingress only needs a nudge
WANTED_VERSION = "2.0"


class Listed(Protocol):
    """What the decider reads of a listed webhook (`pipedrive.webhooks.Webhook` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def subscription_url(self) -> str: ...
    @property
    def event_action(self) -> str: ...
    @property
    def event_object(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def active(self) -> bool: ...
    @property
    def http_auth_user(self) -> str | None: ...
    @property
    def http_auth_password(self) -> SecretStr | None: ...


@dataclass(frozen=True)
class Desired:
    """The webhook an account should have: where Pipedrive calls, with which credentials."""

    subscription_url: str
    http_auth_user: str
    http_auth_password: SecretStr


@dataclass(frozen=True)
class Plan:
    """`delete` first (it frees room under Pipedrive's limit), then `create` when nothing of
    ours serves; `keep` is ours that serves as it is."""

    keep: int | None = None
    delete: tuple[int, ...] = ()
    create: bool = False


def webhook_name(installation: str, account: str) -> str:
    """Our webhook's name for `account` (at most 19 + 32 + 200 characters: under the 255
    Pipedrive allows)."""
    return f"{NAME_PREFIX} {installation} {account}"


def is_ours(webhook: Listed, installation: str, account: str | None = None) -> bool:
    """Registered by this installation (for `account`, when given)."""
    if account is not None:
        return webhook.name == webhook_name(installation, account)
    return webhook.name.startswith(f"{NAME_PREFIX} {installation} ")


def serves(webhook: Listed, desired: Desired) -> bool:
    """Whether this webhook of ours nudges the ingress as it should: active, every event in
    v2, our URL and user, and our password when the listing shows one (it may not)."""
    password = webhook.http_auth_password
    return (
        webhook.active
        and (webhook.event_action, webhook.event_object) == WANTED_EVENT
        and webhook.version == WANTED_VERSION
        and webhook.subscription_url == desired.subscription_url
        and webhook.http_auth_user == desired.http_auth_user
        and (
            password is None
            or password.get_secret_value() == desired.http_auth_password.get_secret_value()
        )
    )


def plan(listed: list[Listed], installation: str, account: str, desired: Desired | None) -> Plan:
    """Keep the first of ours that serves `desired`, delete the rest of ours, create one when
    none serves. `desired` None: the account wants none, every one of ours goes."""
    ours = sorted((w for w in listed if is_ours(w, installation, account)), key=lambda w: w.id)
    if desired is None:
        return Plan(delete=tuple(w.id for w in ours))
    keep = next((w.id for w in ours if serves(w, desired)), None)
    return Plan(
        keep=keep,
        delete=tuple(w.id for w in ours if w.id != keep),
        create=keep is None,
    )
