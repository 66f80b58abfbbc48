"""The connector's actions on the command line: `deals`, `stages`, `activities` (JSON on stdout).

Options are taken as text and checked by `daemon.actions.connector`, so a bad value gets the
same one-line message and exit code 2 from the CLI as from Python, before any request is sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import click

from daemon.actions.connector import Connector
from daemon.cli import plumbing
from daemon.pipedrive.client import RetryOptions
from daemon.service import accounts as accounts_module

# One attempt, no retry: a 429 or 5xx reaches the caller at once with its exit code (15, 16).
# Retrying here could wait until the daily budget resets (Retry-After up to midnight), and a
# retried POST after a 5xx or timeout may add the deal or activity twice.
CLI_RETRY = RetryOptions(attempts=1)
JSON_INDENT = 2

Action = Callable[[Connector], Awaitable[dict[str, Any]]]

account_option = click.option(
    "--account",
    metavar="NAME",
    help="The [[accounts]] entry to act on; required when the config has several.",
)


def _perform(ctx: click.Context, account: str | None, action: Action) -> None:
    config = plumbing.load_config(ctx)
    name = plumbing.guarded(lambda: plumbing.pick_account(config, account))

    async def run() -> dict[str, Any]:
        async with accounts_module.open_accounts(config, retry=CLI_RETRY) as accounts:
            connector = Connector(accounts.clients[name], accounts.caches[name])
            return await action(connector)

    result = plumbing.run_async(run)
    click.echo(json.dumps(result, indent=JSON_INDENT, ensure_ascii=False))


@click.group()
def deals() -> None:
    """Get, add and update deals (the connector's deal actions)."""


@click.group()
def stages() -> None:
    """Get stages."""


@click.group()
def activities() -> None:
    """Add activities."""


@deals.command("get")
@click.argument("deal_id", metavar="ID")
@account_option
@click.pass_context
def get_deal(ctx: click.Context, deal_id: str, account: str | None) -> None:
    """Get deal by ID: prints a DealResponse."""
    _perform(ctx, account, lambda connector: connector.get_deal(deal_id))


@deals.command("add")
@click.option("--title", help="The deal's title (required).")
@click.option("--pipeline-id", help="Pipeline id (V2 only; the stage implies it).")
@click.option("--stage-id", help="Stage id; default: the first stage of the pipeline.")
@click.option("--status", help="open, won or lost.")
@click.option("--value", help="Monetary value, a number.")
@click.option("--currency", help="3-letter currency code, e.g. EUR.")
@click.option("--person-id", help="Linked person's id.")
@click.option("--org-id", help="Linked organization's id.")
@click.option("--expected-close-date", metavar="yyyy-MM-dd")
@click.option("--visible-to", help="1, 3, 5, 7, owner, followers or 'entire company'.")
@click.option("--legacy", is_flag=True, help="Add deal [DEPRECATED]: print a DealResponse.")
@account_option
@click.pass_context
def add_deal(
    ctx: click.Context,
    title: str | None,
    pipeline_id: str | None,
    stage_id: str | None,
    status: str | None,
    value: str | None,
    currency: str | None,
    person_id: str | None,
    org_id: str | None,
    expected_close_date: str | None,
    visible_to: str | None,
    legacy: bool,
    account: str | None,
) -> None:
    """Add deal (V2): prints a DealResponseV2 (a DealResponse with --legacy)."""
    _perform(
        ctx,
        account,
        lambda connector: connector.add_deal(
            title,
            pipeline_id=pipeline_id,
            stage_id=stage_id,
            status=status,
            value=value,
            currency=currency,
            person_id=person_id,
            org_id=org_id,
            expected_close_date=expected_close_date,
            visible_to=visible_to,
            legacy=legacy,
        ),
    )


@deals.command("update-stage")
@click.argument("deal_id", metavar="ID")
@click.option("--stage-id", help="The new stage's id (required).")
@click.option("--pipeline-id", help="The stage's pipeline (required unless --legacy).")
@click.option("--expected-close-date", metavar="yyyy-MM-dd")
@click.option("--legacy", is_flag=True, help="Update deal stage [DEPRECATED]: no pipeline.")
@account_option
@click.pass_context
def update_stage(
    ctx: click.Context,
    deal_id: str,
    stage_id: str | None,
    pipeline_id: str | None,
    expected_close_date: str | None,
    legacy: bool,
    account: str | None,
) -> None:
    """Update deal stage (V2): prints a DealResponseV2 (a DealResponse with --legacy)."""
    _perform(
        ctx,
        account,
        lambda connector: connector.update_deal_stage(
            deal_id,
            stage_id,
            pipeline_id=pipeline_id,
            expected_close_date=expected_close_date,
            legacy=legacy,
        ),
    )


@deals.command("update-status")
@click.argument("deal_id", metavar="ID")
@click.option("--status", help="open, won or lost (required).")
@click.option("--lost-reason", help="Why the deal was lost (only with --status lost).")
@account_option
@click.pass_context
def update_status(
    ctx: click.Context,
    deal_id: str,
    status: str | None,
    lost_reason: str | None,
    account: str | None,
) -> None:
    """Update deal status: prints a DealResponse."""
    _perform(
        ctx,
        account,
        lambda connector: connector.update_deal_status(deal_id, status, lost_reason=lost_reason),
    )


@stages.command("get")
@click.argument("stage_id", metavar="ID")
@account_option
@click.pass_context
def get_stage(ctx: click.Context, stage_id: str, account: str | None) -> None:
    """Get stage by ID: prints a StageResponse."""
    _perform(ctx, account, lambda connector: connector.get_stage(stage_id))


@activities.command("add")
@click.option("--type", "type_", help="Activity type key, e.g. call, meeting (required).")
@click.option("--subject", help="The activity's subject (required).")
@click.option("--due-date", metavar="yyyy-MM-dd")
@click.option("--due-time", metavar="HH:MM", help="Due time, UTC.")
@click.option("--duration", metavar="HH:MM")
@click.option("--note", help="Note (HTML).")
@click.option("--user-id", help="Assignee's user id; default: the token's user.")
@click.option("--deal-id")
@click.option("--person-id")
@click.option("--org-id")
@account_option
@click.pass_context
def add_activity(
    ctx: click.Context,
    type_: str | None,
    subject: str | None,
    due_date: str | None,
    due_time: str | None,
    duration: str | None,
    note: str | None,
    user_id: str | None,
    deal_id: str | None,
    person_id: str | None,
    org_id: str | None,
    account: str | None,
) -> None:
    """Add activity: prints an ActivityResponse."""
    _perform(
        ctx,
        account,
        lambda connector: connector.add_activity(
            type_,
            subject,
            due_date=due_date,
            due_time=due_time,
            duration=duration,
            note=note,
            user_id=user_id,
            deal_id=deal_id,
            person_id=person_id,
            org_id=org_id,
        ),
    )
