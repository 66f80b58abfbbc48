"""Pipedrive's own webhooks (`/v1/webhooks`): list, create and delete an account's, typed as
the v1 OpenAPI file's `BaseWebhook` and `addWebhookRequest` describe them.

A webhook's basic-auth password is a secret: it is sent to Pipedrive, and read back, as a
`SecretStr`, so no repr, log line or error message can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from daemon import times
from daemon.errors import PipedriveNotFound, PipedriveUnavailable
from daemon.pipedrive.client import PipedriveClient

PATH = "/v1/webhooks"
ALL = "*"  # event_action and event_object: every action on every object
VERSION = "2.0"
NAME_MAX = 255  # the spec's maxLength of `name`


@dataclass(frozen=True)
class Webhook:
    """One webhook as `GET /v1/webhooks` lists it (only what the daemon reads)."""

    id: int
    subscription_url: str
    name: str
    event_action: str
    event_object: str
    version: str
    active: bool  # `is_active` 1; Pipedrive sets 0 when it gives up on the URL
    http_auth_user: str | None
    http_auth_password: SecretStr | None
    last_delivery_at: datetime | None
    last_http_status: int | None

    @property
    def event(self) -> str:
        """`action.object`, as Pipedrive's guide writes an event: `*.*` for every one."""
        return f"{self.event_action}.{self.event_object}"


@dataclass(frozen=True)
class NewWebhook:
    """A `POST /v1/webhooks` body: every action on every object, webhooks v2, basic auth."""

    subscription_url: str
    name: str
    http_auth_user: str
    http_auth_password: SecretStr
    event_action: str = ALL
    event_object: str = ALL
    version: str = VERSION

    def body(self) -> dict[str, Any]:
        """The request's JSON: the one place the password is unwrapped."""
        return {
            "subscription_url": self.subscription_url,
            "event_action": self.event_action,
            "event_object": self.event_object,
            "name": self.name[:NAME_MAX],
            "version": self.version,
            "http_auth_user": self.http_auth_user,
            "http_auth_password": self.http_auth_password.get_secret_value(),
        }


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return times.parse_pipedrive(value)
    except ValueError:
        return None  # advice for a person, not worth failing the listing over


def _webhook(item: Any, where: str) -> Webhook:
    """One listed webhook; an entry without an integer id cannot be told apart from another,
    and fails the listing rather than being guessed at."""
    if not isinstance(item, dict) or type(item.get("id")) is not int:
        raise PipedriveUnavailable(f"{where}: Pipedrive listed a webhook without an id")
    password = item.get("http_auth_password")
    status = item.get("last_http_status")
    return Webhook(
        id=item["id"],
        subscription_url=_text(item, "subscription_url"),
        name=_text(item, "name"),
        event_action=_text(item, "event_action"),
        event_object=_text(item, "event_object"),
        version=_text(item, "version"),
        active=item.get("is_active") in (1, True),
        http_auth_user=item.get("http_auth_user")
        if isinstance(item.get("http_auth_user"), str)
        else None,
        http_auth_password=SecretStr(password) if isinstance(password, str) else None,
        last_delivery_at=_time(item.get("last_delivery_time")),
        last_http_status=status if type(status) is int else None,
    )


async def list_webhooks(client: PipedriveClient) -> list[Webhook]:
    """Every webhook of the company that the account's token may see, ours and others'."""
    where = f"account {client.account!r}: GET {PATH}"
    body = await client.call("GET", PATH)
    data = body["data"] if body["data"] is not None else []
    if not isinstance(data, list):
        raise PipedriveUnavailable(f"{where}: Pipedrive listed something other than webhooks")
    return [_webhook(item, where) for item in data]


async def create(client: PipedriveClient, new: NewWebhook) -> Webhook:
    """Register `new`; 422 "Webhooks limit reached" (40 per user) is a `PipedriveError`
    with status 422. A POST is not retried after a 5xx or a timeout (it may have been made):
    the next repair finds it by its name and URL."""
    data = await client.send("POST", PATH, new.body())
    return _webhook(data, f"account {client.account!r}: POST {PATH}")


async def delete(client: PipedriveClient, webhook_id: int) -> bool:
    """Delete one webhook: True when it was deleted, False when Pipedrive had no such one."""
    try:
        await client.call("DELETE", f"{PATH}/{webhook_id}")
    except PipedriveNotFound:
        return False
    except PipedriveUnavailable as error:
        # The spec's 200 is `{status, success}` with no `data`, which the client's envelope
        # check refuses: an answer in 2xx is the deletion done all the same.
        if error.status is not None and 200 <= error.status < 300:
            return True
        raise
    return True
