"""Each account's webhook at Pipedrive, made to match the config: list the account's
webhooks, let `decide.plan` say what to do, delete and create, and record how it went.

The daemon runs `repair_all` at start and every `[instant] repair_interval`; the CLI's
`webhooks register` and `webhooks remove` run `reconcile` and `remove` now. A Pipedrive error
(the 422 of the 40-webhooks limit, a refused token, an outage) is recorded for `status` and
returned in the outcome, never raised: the other accounts go on, and polling goes on anyway.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import clock as clock_module
from daemon.config import AccountConfig, Config
from daemon.db import installation, instant_webhooks
from daemon.db.tables import INSTANT_FAILED, INSTANT_REGISTERED, INSTANT_REMOVED
from daemon.errors import PipedriveError
from daemon.instant import decide
from daemon.pipedrive import webhooks
from daemon.pipedrive.client import PipedriveClient

logger = logging.getLogger(__name__)

USER_PREFIX = "pipedrive-triggers-"
USER_BYTES = 8
PASSWORD_BYTES = 32  # 43 characters of URL-safe base64
LIMIT_STATUS = 422  # Pipedrive's "Webhooks limit reached" (40 per user)

CREATED = "created"
RECREATED = "re-created"
UNCHANGED = "unchanged"
REMOVED = "removed"
NOTHING = "nothing to do"
FAILED = "failed"
# Outcomes after which the account's webhook is registered and active at Pipedrive.
REGISTERED_OUTCOMES = (CREATED, RECREATED, UNCHANGED)


@dataclass(frozen=True)
class Outcome:
    """What one account's reconcile did. `error` is the recorded message (never a secret)
    and `exit_code` the CLI's for it; `deleted` counts webhooks of ours deleted."""

    account: str
    did: str  # one of the constants above
    webhook_id: int | None = None
    deleted: int = 0
    error: str | None = None
    exit_code: int = 0

    @property
    def failed(self) -> bool:
        return self.did == FAILED

    def line(self) -> str:
        """One line for a person: `account 'main': created webhook 7`."""
        text = f"account {self.account!r}: {self.did}"
        if self.webhook_id is not None and self.did in REGISTERED_OUTCOMES:
            text += f" webhook {self.webhook_id}"
        if self.deleted:
            text += f", deleted {self.deleted} of ours"
        if self.error is not None:
            text += f": {self.error}"
        return text


def wanted(config: Config, account: AccountConfig) -> bool:
    """Whether the account should have a webhook: `[instant]` set and it did not opt out."""
    return config.instant is not None and account.instant


def new_credentials() -> tuple[str, SecretStr]:
    """Basic-auth credentials for Pipedrive to send: a user that differs per registration, so
    a webhook made by a lost database is told from ours, and a random password."""
    user = USER_PREFIX + secrets.token_hex(USER_BYTES)
    return user, SecretStr(secrets.token_urlsafe(PASSWORD_BYTES))


def _message(error: PipedriveError) -> str:
    if error.status == LIMIT_STATUS:
        return (
            f"{error}: Pipedrive allows 40 webhooks per user; delete unused ones (see "
            "`pipedrive-triggers webhooks list`) and the next repair registers this one"
        )
    return str(error)


async def reconcile(
    engine: AsyncEngine,
    config: Config,
    account: AccountConfig,
    client: PipedriveClient,
    installation_id: str,
    clock: clock_module.Clock = clock_module.SYSTEM,
    *,
    proven: bool = False,
) -> Outcome:
    """Make the account's webhooks at Pipedrive what the config wants, and record it.
    `proven`: the webhook called since the last check with the credentials in the database,
    so it exists and is active; if it was registered for the URL wanted, no call is spent
    (10 tokens an hour: the most a quiet account with a healthy webhook would spend)."""
    name = account.name
    if not wanted(config, account):
        found = await instant_webhooks.load(engine, name)
        if found is None or found.state == INSTANT_REMOVED:
            return Outcome(name, NOTHING)  # never registered: no call spent
        return await unregister(engine, client, installation_id, name, clock)
    assert config.instant is not None
    if proven:
        found = await instant_webhooks.load(engine, name)
        if (
            found is not None
            and found.state == INSTANT_REGISTERED
            and found.webhook_id is not None
            and found.subscription_url == config.instant.subscription_url(name)
        ):
            return Outcome(name, UNCHANGED, found.webhook_id)
    user, password = new_credentials()
    row = await instant_webhooks.ensure_credentials(engine, name, user, password, clock.now())
    desired = decide.Desired(
        config.instant.subscription_url(name), row.http_auth_user, row.http_auth_password
    )
    deleted = 0
    try:
        listed = await webhooks.list_webhooks(client)
        plan = decide.plan(list(listed), installation_id, name, desired)
        for webhook_id in plan.delete:
            deleted += await webhooks.delete(client, webhook_id)
        if not plan.create:
            assert plan.keep is not None
            await _record(engine, name, INSTANT_REGISTERED, plan.keep, desired, None, clock)
            return Outcome(name, UNCHANGED, plan.keep, deleted)
        new = webhooks.NewWebhook(
            subscription_url=desired.subscription_url,
            name=decide.webhook_name(installation_id, name),
            http_auth_user=desired.http_auth_user,
            http_auth_password=desired.http_auth_password,
        )
        created = await webhooks.create(client, new)
    except PipedriveError as error:
        message = _message(error)
        kept = None if deleted else row.webhook_id
        await _record(engine, name, INSTANT_FAILED, kept, desired, message, clock)
        return Outcome(name, FAILED, deleted=deleted, error=message, exit_code=error.exit_code)
    await _record(engine, name, INSTANT_REGISTERED, created.id, desired, None, clock, True)
    did = RECREATED if deleted or row.webhook_id is not None else CREATED
    return Outcome(name, did, created.id, deleted)


async def _record(
    engine: AsyncEngine,
    account: str,
    state: str,
    webhook_id: int | None,
    desired: decide.Desired,
    error: str | None,
    clock: clock_module.Clock,
    registered: bool = False,
) -> None:
    await instant_webhooks.record(
        engine,
        account,
        state=state,
        webhook_id=webhook_id,
        subscription_url=desired.subscription_url,
        last_error=error,
        now=clock.now(),
        registered=registered,
    )


async def unregister(
    engine: AsyncEngine,
    client: PipedriveClient,
    installation_id: str,
    account: str,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> Outcome:
    """`webhooks remove`: delete ours for `account` whatever the config says, and record it
    (a running daemon whose config still wants one registers it again at its next repair)."""
    try:
        deleted = await remove(client, installation_id, account)
    except PipedriveError as error:
        message = _message(error)
        await instant_webhooks.record(
            engine,
            account,
            state=INSTANT_FAILED,
            webhook_id=None,
            subscription_url=None,
            last_error=f"removing the webhook: {message}",
            now=clock.now(),
        )
        return Outcome(account, FAILED, error=message, exit_code=error.exit_code)
    await instant_webhooks.record(
        engine,
        account,
        state=INSTANT_REMOVED,
        webhook_id=None,
        subscription_url=None,
        last_error=None,
        now=clock.now(),
    )
    return Outcome(account, REMOVED, deleted=deleted)


async def remove(client: PipedriveClient, installation_id: str, account: str) -> int:
    """Delete every webhook of ours for `account` (never another's); how many were deleted."""
    listed = await webhooks.list_webhooks(client)
    plan = decide.plan(list(listed), installation_id, account, None)
    deleted = 0
    for webhook_id in plan.delete:
        deleted += await webhooks.delete(client, webhook_id)
    return deleted


def _log(outcome: Outcome) -> None:
    extra = {"action": f"instant.{outcome.did.replace(' ', '_')}", "account": outcome.account}
    if outcome.failed:
        logger.warning("instant mode: %s", outcome.line(), extra=extra)
    elif outcome.did in (CREATED, RECREATED, REMOVED) or outcome.deleted:
        logger.info("instant mode: %s", outcome.line(), extra=extra)
    else:
        logger.debug("instant mode: %s", outcome.line(), extra=extra)


async def repair_all(
    engine: AsyncEngine,
    config: Config,
    clients: Mapping[str, PipedriveClient],
    clock: clock_module.Clock = clock_module.SYSTEM,
    proven: Collection[str] = (),
) -> list[Outcome]:
    """Reconcile every account of `config` that has a client, one after another, logging
    each change and failure once; an account without `[instant]` or opted out spends no call
    unless it still has a webhook of ours to delete, nor one in `proven` (see `reconcile`)."""
    installation_id = await installation.installation_id(engine, clock.now())
    outcomes = []
    for account in config.accounts:
        client = clients.get(account.name)
        if client is None:
            continue
        outcome = await reconcile(
            engine,
            config,
            account,
            client,
            installation_id,
            clock,
            proven=account.name in proven,
        )
        _log(outcome)
        outcomes.append(outcome)
    return outcomes
