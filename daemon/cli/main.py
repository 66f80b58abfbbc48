"""The `pipedrive-triggers` command line: run, migrate, check-config, status, demo, sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from daemon import config as config_module
from daemon import logs, redact
from daemon.cli import actions, outbox, plumbing, subscriptions, webhooks
from daemon.db import database, instance_lock
from daemon.delivery import targets
from daemon.polling import forecast
from daemon.service import reload
from daemon.status import snapshot

logger = logging.getLogger("daemon")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=config_module.CONFIG_ENV_VAR,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The TOML config file (env {config_module.CONFIG_ENV_VAR}).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format", default="text", show_default=True, type=click.Choice(["text", "json"])
)
@click.version_option(package_name="pipedrive-triggers")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, log_level: str, log_format: str) -> None:
    """Turn what happens in Pipedrive into signed, retried, never-lost webhooks."""
    logs.setup(log_level, "json" if log_format == "json" else "text")
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the config file and say what it would run, without running it."""
    config = plumbing.load_config(ctx, reload.read_config)
    click.echo(f"{ctx.obj['config_path']}: OK")
    click.echo(f"database: {redact.url(config.database.url)}")
    for account in config.accounts:
        click.echo(
            f"account {account.name!r}: {redact.url(account.api_root)}, "
            f"{account.calls_per_minute} calls/min"
        )
        click.echo(f"  {forecast.prediction_line(config, account.name)}")
        click.echo(f"  {forecast.calls_line(config, account.name)}")
    for warning in [*config_module.startup_warnings(config), *forecast.startup_warnings(config)]:
        click.echo(f"warning: {warning}", err=True)
    for sub in config.subscriptions:
        signed = "signed" if sub.secret else "unsigned"
        click.echo(
            f"subscription {sub.name!r}: {sub.trigger} on {sub.account!r} every "
            f"{sub.poll_interval:g}s -> {redact.url(str(sub.callback_url))} ({signed})"
        )
        address = targets.literal(sub.callback_url.host or "")
        kind = targets.guarded_kind(address) if address is not None else None
        if kind is not None and not sub.allow_private_targets:
            click.echo(
                f"warning: subscription {sub.name!r}: callback address {address} is {kind}; "
                f"deliveries will be refused unless it sets {targets.ALLOW_KEY} = true",
                err=True,
            )


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema to the newest revision."""
    url = plumbing.load_config(ctx, config_module.load_without_secrets).database.url
    plumbing.guarded(lambda: database.upgrade(url))
    click.echo(f"database {redact.url(url)} is at revision {database.head_revision()}")


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Poll Pipedrive and deliver webhooks until SIGTERM or Ctrl-C."""
    # Imported here: the scheduler, deliverer and admin listener add ~0.3 s to every other command.
    from daemon.service import lifecycle

    config = plumbing.load_config(ctx, config_module.load_to_run)
    held = contextlib.ExitStack()  # the lock lives as long as this process
    plumbing.guarded(lambda: held.enter_context(instance_lock.hold(config.database.url)))
    plumbing.guarded(lambda: database.upgrade(config.database.url))

    async def serve() -> None:
        stop = asyncio.Event()
        reloads = reload.Reloads(ctx.obj["config_path"])
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # The unit's ExecReload= sends SIGHUP: re-read the config (see `reload`).
        loop.add_signal_handler(signal.SIGHUP, reloads.request)
        await lifecycle.run(config, stop, reloads=reloads)

    try:
        plumbing.run_async(serve)
    # A SystemExit passes: a refusal (config, database, admin port) its one line explained.
    except Exception:
        logger.exception("crashed", extra={"action": "daemon.crashed"})
        sys.exit(plumbing.EXIT_CRASHED)
    logger.info("stopped", extra={"action": "daemon.stopped"})


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--accounts", is_flag=True, help="Per account: Pipedrive calls, tokens and waits today (UTC)."
)
@click.option(
    "--instances",
    is_flag=True,
    help="The replicas: instance, host, pid, started, heartbeat, accounts held, state.",
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, accounts: bool, instances: bool) -> None:
    """Whether the daemon runs, and each subscription's state, polls and queue. Exit status:
    0 all well; 1 the daemon is not running, or a subscription is failing, paused,
    disabled or orphaned, or has dead letters."""
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    if accounts:
        rows = plumbing.with_engine(
            config, lambda engine: snapshot.account_rows(config, engine, datetime.now(UTC))
        )
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            columns = ["account", "polled_by", "calls_today", "tokens_today", "rate_limit_waits"]
            columns.append("daily_tokens_left")
            shown = [
                {
                    **row,
                    "polled_by": row["polled_by"] or "-",
                    "daily_tokens_left": snapshot.daily_tokens(row),
                }
                for row in rows
            ]
            _print_table(shown, columns)
        return
    report = plumbing.with_engine(
        config, lambda engine: snapshot.gather(config, engine, datetime.now(UTC))
    )
    if instances:
        if as_json:
            click.echo(json.dumps(report.replicas, indent=2))
        else:
            columns = ["instance", "host", "pid", "started_at", "heartbeat_at", "accounts", "state"]
            _print_table(report.replicas, columns)
        sys.exit(report.exit_code)
    if as_json:
        click.echo(json.dumps(report.subscriptions, indent=2))
    else:
        # A terminal gets a table that fits it; a pipe every column, each row on one line.
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        click.echo(snapshot.render(report, width), nl=False)
    sys.exit(report.exit_code)


@main.command()
@click.option("--forever", is_flag=True, help="Keep adding deals and activities until Ctrl-C.")
@click.option("--deals", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--activities", default=3, show_default=True, type=click.IntRange(0, 1000))
@click.option(
    "--instant",
    is_flag=True,
    help="Instant mode: the sandbox calls the daemon's webhook ingress at every change.",
)
def demo(forever: bool, deals: int, activities: int, instant: bool) -> None:
    """Run a sandbox Pipedrive, the daemon and a webhook receiver, and show events flow."""
    # Imported here: a development tool; sandbox, receiver and daemon add ~0.45 s elsewhere.
    from daemon.dev import demo as demo_module

    sys.exit(
        plumbing.run_async(
            lambda: demo_module.run(
                forever=forever, deals=deals, activities=activities, instant=instant
            )
        )
    )


@main.command()
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the generated data.")
def sandbox(port: int, seed: int) -> None:
    """Run the Pipedrive sandbox alone, with seeded data, for developing consumers offline."""
    # Imported here: a development tool; uvicorn and the sandbox add ~0.15 s elsewhere.
    from daemon.dev import sandbox as sandbox_module

    sandbox_module.run_standalone(port=port, seed=seed)


main.add_command(actions.deals)
main.add_command(actions.stages)
main.add_command(actions.activities)
main.add_command(outbox.dead_letters)
main.add_command(outbox.retry_now)
main.add_command(subscriptions.subscriptions)
main.add_command(subscriptions.secrets_group)
main.add_command(subscriptions.schema)
main.add_command(webhooks.webhooks)
