"""`webhooks list | register | remove`: the accounts' webhooks at Pipedrive, which instant mode
registers (one per account, see `daemon.instant`), seen and repaired from the command line.

`list` shows every webhook of the account, ours and other tools'; `remove` deletes ours only.
Neither needs `[instant]` in the config; `register` does. No output shows a webhook's
password, and URLs are shown with their credentials and query values masked.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon import redact, times
from daemon.cli import plumbing
from daemon.db import database, installation
from daemon.instant import decide, registration
from daemon.pipedrive import webhooks as pipedrive_webhooks
from daemon.pipedrive.client import PipedriveClient, RetryOptions
from daemon.service import accounts as accounts_module

# One attempt, as the actions: a 429's Retry-After may reach midnight, and a POST after a
# timeout may have registered the webhook already (the next `register` finds it by name).
CLI_RETRY = RetryOptions(attempts=1)
JSON_INDENT = 2

T = TypeVar("T")
Work = Callable[[AsyncEngine, dict[str, PipedriveClient], str], Awaitable[T]]

account_option = click.option(
    "--account", metavar="NAME", help="Only this [[accounts]] entry (default: every account)."
)


def _chosen(config: config_module.Config, name: str | None) -> list[config_module.AccountConfig]:
    if name is None:
        return list(config.accounts)
    return [config.account(plumbing.pick_account(config, name))]


def _run(config: config_module.Config, work: Work[T]) -> T:
    """Open the database and the accounts' clients, and await `work` with this
    installation's id (what our webhooks' names carry)."""

    async def run() -> T:
        async with (
            database.open_engine(config.database.url) as engine,
            accounts_module.open_accounts(config, retry=CLI_RETRY) as opened,
        ):
            installation_id = await installation.installation_id(engine, datetime.now(UTC))
            return await work(engine, opened.clients, installation_id)

    return plumbing.run_async(run)


@click.group()
def webhooks() -> None:
    """The accounts' webhooks at Pipedrive that instant mode registers."""


def _row(account: str, webhook: pipedrive_webhooks.Webhook, installation_id: str) -> dict[str, Any]:
    delivered = webhook.last_delivery_at
    return {
        "account": account,
        "id": webhook.id,
        "url": redact.url(webhook.subscription_url),
        "event": webhook.event,
        "active": webhook.active,
        "last_delivery_at": times.format_rfc3339_z(delivered) if delivered else None,
        "last_http_status": webhook.last_http_status,
        "ours": decide.is_ours(webhook, installation_id),
    }


COLUMNS = ("account", "id", "ours", "active", "event", "last_delivery_at", "last_http_status")


@webhooks.command("list")
@account_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_command(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """Every webhook Pipedrive has for each account, ours and other tools' alike."""
    config = plumbing.load_config(ctx)
    chosen = plumbing.guarded(lambda: _chosen(config, account))

    async def work(
        engine: AsyncEngine, clients: dict[str, PipedriveClient], installation_id: str
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for entry in chosen:
            listed = await pipedrive_webhooks.list_webhooks(clients[entry.name])
            rows.extend(_row(entry.name, webhook, installation_id) for webhook in listed)
        return rows

    rows = _run(config, work)
    if as_json:
        click.echo(json.dumps(rows, indent=JSON_INDENT, ensure_ascii=False))
        return
    if not rows:
        click.echo("no webhooks")
        return
    shown = [{**row, "last_delivery_at": row["last_delivery_at"] or "-"} for row in rows]
    widths = {c: max(len(c), *(len(str(r[c])) for r in shown)) for c in COLUMNS}
    click.echo("  ".join(c.ljust(widths[c]) for c in COLUMNS) + "  url")
    for row in shown:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS) + f"  {row['url']}")


def _report(outcomes: list[registration.Outcome], summary: str | None = None) -> None:
    """Each failure's line on stderr; each success's line on stdout, or only `summary` in
    their place; then the first failure's exit code."""
    for outcome in outcomes:
        if outcome.failed:
            click.echo(f"pipedrive-triggers: {outcome.line()}", err=True)
        elif summary is None:
            click.echo(outcome.line())
    if summary is not None:
        click.echo(summary)
    failed = [outcome.exit_code for outcome in outcomes if outcome.failed]
    if failed:
        sys.exit(failed[0])


@webhooks.command("register")
@account_option
@click.pass_context
def register(ctx: click.Context, account: str | None) -> None:
    """Register or repair each account's webhook now (the daemon does it every
    repair_interval); an account with `instant = false` has ours deleted."""
    config = plumbing.load_config(ctx)
    if config.instant is None:
        plumbing.fail(
            "webhooks register: the config has no [instant] section, so no account wants a "
            "webhook; add one (see config.example.toml), or use `webhooks remove`",
            plumbing.EXIT_CONFIG,
        )
    chosen = plumbing.guarded(lambda: _chosen(config, account))

    async def work(
        engine: AsyncEngine, clients: dict[str, PipedriveClient], installation_id: str
    ) -> list[registration.Outcome]:
        return [
            await registration.reconcile(
                engine, config, entry, clients[entry.name], installation_id
            )
            for entry in chosen
        ]

    _report(_run(config, work))


@webhooks.command("remove")
@account_option
@click.pass_context
def remove(ctx: click.Context, account: str | None) -> None:
    """Delete this installation's webhooks at Pipedrive (never another tool's); prints
    `removed N`. A running daemon that still wants one registers it at its next repair."""
    config = plumbing.load_config(ctx)
    chosen = plumbing.guarded(lambda: _chosen(config, account))

    async def work(
        engine: AsyncEngine, clients: dict[str, PipedriveClient], installation_id: str
    ) -> list[registration.Outcome]:
        return [
            await registration.unregister(engine, clients[entry.name], installation_id, entry.name)
            for entry in chosen
        ]

    outcomes = _run(config, work)
    _report(outcomes, f"removed {sum(outcome.deleted for outcome in outcomes)}")
