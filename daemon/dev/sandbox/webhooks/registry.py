"""The account's webhook subscriptions as `POST/GET/DELETE /v1/webhooks` keep them: the body's
checks, the 40-per-user limit, removal (by the API or by Pipedrive), and delivery bookkeeping."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from daemon.dev.sandbox import changes, clock, errors
from daemon.dev.sandbox.state import Store

LIMIT_PER_USER = 40  # "The maximum limit of webhooks is 40 different webhooks per user."
LIMIT_REACHED = "Webhooks limit reached"
ACTIONS = ("create", "change", "delete", "*")
OBJECTS = (
    "activity", "deal", "lead", "note", "organization", "person", "pipeline", "product",
    "stage", "user", "*",
)  # fmt: skip
VERSIONS = ("1.0", "2.0")
DEFAULT_VERSION = "2.0"  # the default since 2025-03-17 (the spec's `version` description)
NAME_MAX = 255
BAD_URL = "invalid or non-reachable URL"  # the spec's 400 example
_KEYS = frozenset(
    {
        "subscription_url", "event_action", "event_object", "name", "user_id",
        "http_auth_user", "http_auth_password", "version",
    }
)  # fmt: skip
REMOVED_BY_API = "deleted via API"


def validation_error(problems: Mapping[str, list[str]]) -> errors.ApiError:
    """The spec's `WebhooksBadRequestResponse`: errors keyed by field."""
    return errors.ApiError(400, {"status": "error", "success": False, "errors": dict(problems)})


def not_found() -> errors.ApiError:
    """The spec's 404 for `DELETE /webhooks/{id}`."""
    return errors.ApiError(
        404, {"status": "error", "success": False, "errors": {"id": ["not found"]}}
    )


def _url_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return BAD_URL
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return BAD_URL
    if parts.hostname == "pipedrive.com" or parts.hostname.endswith(".pipedrive.com"):
        return "Pipedrive API endpoints cannot be used as subscription_url"
    return None


def _problems(body: Mapping[str, Any], store: Store) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def problem(key: str, text: str) -> None:
        found.setdefault(key, []).append(text)

    for key in sorted(set(body) - _KEYS):
        problem(key, "unknown parameter")
    for key in ("subscription_url", "event_action", "event_object", "name"):
        if body.get(key) is None:
            problem(key, "is required")
    url = body.get("subscription_url")
    if url is not None and (text := _url_problem(url)):
        problem("subscription_url", text)
    for key, allowed in (("event_action", ACTIONS), ("event_object", OBJECTS)):
        if body.get(key) is not None and body[key] not in allowed:
            problem(key, f"must be one of {', '.join(allowed)}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problem("name", "must be a non-empty string")
    elif isinstance(name, str) and len(name) > NAME_MAX:
        problem("name", f"must be at most {NAME_MAX} characters")
    user_id = body.get("user_id")
    if user_id is not None:
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            problem("user_id", "must be an integer")
        elif user_id not in store.users:
            problem("user_id", "user not found")
    for key in ("http_auth_user", "http_auth_password"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problem(key, "must be a string")
    if body.get("version", DEFAULT_VERSION) not in VERSIONS:
        problem("version", f"must be one of {', '.join(VERSIONS)}")
    return found


class Registry:
    """Webhooks by id. Removed ones stay here (for `Sandbox.webhooks`) but leave the API's list."""

    def __init__(self, store: Store, listener: changes.Listener | None = None) -> None:
        self.store = store
        # Told of the account's writes from the first webhook on (until then the store
        # copies nothing for anyone).
        self.listener = listener
        self._records: dict[int, dict[str, Any]] = {}
        self._last_id = 0

    def _stamp(self) -> str:
        return clock.lead_time(self.store.now())  # the spec example: …T08:25:27.000Z

    def add(self, body: Any) -> dict[str, Any]:
        """A new webhook from a `POST /v1/webhooks` body (400 / 422 as `ApiError`)."""
        if not isinstance(body, dict):
            raise validation_error({"body": ["must be a JSON object"]})
        with self.store.lock:
            problems = _problems(body, self.store)
            if problems:
                raise validation_error(problems)
            owner = self.store.me_id
            if sum(1 for w in self.listed() if w["owner_id"] == owner) >= LIMIT_PER_USER:
                raise errors.ApiError(422, errors.error_body(LIMIT_REACHED))
            self._last_id += 1
            admins = [u["id"] for u in self.store.users.values() if u.get("is_admin")]
            record: dict[str, Any] = {
                "id": self._last_id,
                "company_id": self.store.company_id,
                "owner_id": owner,
                "user_id": body.get("user_id", owner),
                "event_action": body["event_action"],
                "event_object": body["event_object"],
                "subscription_url": body["subscription_url"],
                "version": body.get("version", DEFAULT_VERSION),
                "is_active": 1,
                "add_time": self._stamp(),
                "remove_time": None,
                "type": "general",
                "http_auth_user": body.get("http_auth_user"),
                "http_auth_password": body.get("http_auth_password"),
                "remove_reason": None,
                "last_delivery_time": None,
                "last_http_status": None,
                "admin_id": min(admins, default=owner),
                "name": body["name"],
            }
            self._records[record["id"]] = record
            if self.listener is not None and self.listener not in self.store.listeners:
                self.store.listeners.append(self.listener)
            return copy.deepcopy(record)

    def listed(self) -> list[dict[str, Any]]:
        """What `GET /v1/webhooks` serves: every webhook not removed, by id."""
        with self.store.lock:
            return [
                copy.deepcopy(record)
                for _, record in sorted(self._records.items())
                if record["remove_time"] is None
            ]

    def everything(self) -> list[dict[str, Any]]:
        """Removed ones too, with their remove_time and remove_reason (tests' view)."""
        with self.store.lock:
            return [copy.deepcopy(record) for _, record in sorted(self._records.items())]

    def get(self, webhook_id: int) -> dict[str, Any] | None:
        with self.store.lock:
            record = self._records.get(webhook_id)
            return copy.deepcopy(record) if record is not None else None

    def remove(self, webhook_id: int, reason: str = REMOVED_BY_API) -> None:
        """Delete: gone from the list, nothing more sent. 404 if unknown or already gone."""
        with self.store.lock:
            record = self._records.get(webhook_id)
            if record is None or record["remove_time"] is not None:
                raise not_found()
            record.update(is_active=0, remove_time=self._stamp(), remove_reason=reason)

    def deactivate(self, webhook_id: int) -> None:
        """Still listed, with is_active 0; nothing is sent to it."""
        with self.store.lock:
            record = self._records.get(webhook_id)
            if record is None or record["remove_time"] is not None:
                raise not_found()
            record["is_active"] = 0

    def sending(self, webhook_id: int) -> bool:
        """Whether deliveries to this webhook still go out (active, not removed)."""
        with self.store.lock:
            record = self._records.get(webhook_id)
            return bool(record and record["is_active"] and record["remove_time"] is None)

    def matching(self, action: str, entity: str) -> list[dict[str, Any]]:
        """Active v2 webhooks this change is for (`*` matches any action or object)."""
        with self.store.lock:
            return [
                copy.deepcopy(record)
                for _, record in sorted(self._records.items())
                if record["is_active"]
                and record["remove_time"] is None
                and record["version"] == "2.0"
                and record["event_action"] in (action, "*")
                and record["event_object"] in (entity, "*")
            ]

    def delivered(self, webhook_id: int, status: int | None) -> None:
        """An attempt went out: `status` is the answer's, None for a timeout or a refusal."""
        with self.store.lock:
            record = self._records.get(webhook_id)
            if record is not None:
                record.update(last_delivery_time=self._stamp(), last_http_status=status)
