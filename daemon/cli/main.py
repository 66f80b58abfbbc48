"""The `pipedrive-triggers` command line: run, migrate, check-config, status, demo, sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from daemon import config as config_module
from daemon import logs, redact
from daemon.delivery import targets
from daemon.errors import ConfigError, DatabaseError, PipedriveError, PipedriveTriggersError

logger = logging.getLogger("daemon")

EXIT_CRASHED = 1
EXIT_CONFIG = 3
EXIT_DATABASE = 4

T = TypeVar("T")


def fail(message: str, code: int) -> None:
    """One line on stderr, and the exit code; a JSON log line under `--log-format json`."""
    if logs.is_json():
        logger.error("%s", message, extra={"action": "cli.failed"})
    else:
        click.echo(f"pipedrive-triggers: {message}", err=True)
    sys.exit(code)


def guarded(action: Callable[[], T]) -> T:
    """Turn the project's errors into one clear line and a distinct exit code, no traceback."""
    try:
        return action()
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    except DatabaseError as error:
        fail(str(error), EXIT_DATABASE)
    except PipedriveError as error:
        fail(str(error), error.exit_code)
    except PipedriveTriggersError as error:
        fail(str(error), getattr(error, "exit_code", EXIT_CRASHED))
    raise AssertionError("unreachable")


def load_config(
    ctx: click.Context,
    loader: Callable[[Path], config_module.Config] = config_module.load,
) -> config_module.Config:
    path = ctx.obj["config_path"]
    if path is None:
        fail(
            f"no config file: pass --config PATH or set {config_module.CONFIG_ENV_VAR}",
            EXIT_CONFIG,
        )
    return guarded(lambda: loader(path))


def run_async(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return guarded(lambda: asyncio.run(coroutine_factory()))


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
    from daemon.service import reload

    config = load_config(ctx, reload.read_config)
    click.echo(f"{ctx.obj['config_path']}: OK")
    click.echo(f"database: {redact.url(config.database.url)}")
    from daemon.polling import forecast

    for account in config.accounts:
        click.echo(
            f"account {account.name!r}: {redact.url(account.api_root)}, "
            f"{account.calls_per_minute} calls/min"
        )
        click.echo(f"  {forecast.prediction_line(config, account.name)}")
    for warning in config_module.startup_warnings(config):
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
    from daemon.db import database

    url = load_config(ctx, config_module.load_without_secrets).database.url
    guarded(lambda: database.upgrade(url))
    click.echo(f"database {redact.url(url)} is at revision {database.head_revision()}")


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Poll Pipedrive and deliver webhooks until SIGTERM or Ctrl-C."""
    from daemon.db import database, instance_lock
    from daemon.service import lifecycle, reload

    config = load_config(ctx, config_module.load_to_run)
    held = contextlib.ExitStack()  # the lock lives as long as this process
    guarded(lambda: held.enter_context(instance_lock.hold(config.database.url)))
    guarded(lambda: database.upgrade(config.database.url))

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
        run_async(serve)
    except SystemExit:
        logger.error("crashed", extra={"action": "daemon.crashed"})
        raise
    except Exception:
        logger.exception("crashed", extra={"action": "daemon.crashed"})
        sys.exit(EXIT_CRASHED)
    logger.info("stopped", extra={"action": "daemon.stopped"})


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def _account_status(config: config_module.Config, as_json: bool) -> None:
    from datetime import UTC, datetime

    from daemon.pipedrive import account_usage
    from daemon.service import lifecycle

    async def read() -> list[dict[str, Any]]:
        async with lifecycle.open_engine(config) as engine:
            names = [account.name for account in config.accounts]
            return await account_usage.load_today(engine, names, datetime.now(UTC))

    rows = run_async(read)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["account", "calls_today", "tokens_today", "rate_limit_waits"])


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--accounts", is_flag=True, help="Per account: Pipedrive calls, tokens and waits today (UTC)."
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, accounts: bool) -> None:
    """Whether the daemon runs, and each subscription's state, polls and queue. Exit status:
    0 all well; 1 the daemon is not running, or a subscription is failing, paused,
    disabled or orphaned, or has dead letters."""
    from datetime import UTC, datetime

    from daemon.service import lifecycle
    from daemon.status import snapshot

    config = load_config(ctx, config_module.load_without_secrets)
    if accounts:
        _account_status(config, as_json)
        return

    async def read() -> snapshot.Report:
        async with lifecycle.open_engine(config) as engine:
            return await snapshot.gather(config, engine, datetime.now(UTC))

    report = run_async(read)
    if as_json:
        click.echo(json.dumps(report.subscriptions, indent=2))
    else:
        click.echo(snapshot.render(report), nl=False)
    sys.exit(report.exit_code)


@main.command()
@click.option("--forever", is_flag=True, help="Keep adding deals and activities until Ctrl-C.")
@click.option("--deals", default=4, show_default=True, type=click.IntRange(1, 1000))
@click.option("--activities", default=3, show_default=True, type=click.IntRange(0, 1000))
def demo(forever: bool, deals: int, activities: int) -> None:
    """Run a sandbox Pipedrive, the daemon and a webhook receiver, and show events flow."""
    from daemon.dev import demo as demo_module

    sys.exit(
        guarded(
            lambda: asyncio.run(
                demo_module.run(forever=forever, deals=deals, activities=activities)
            )
        )
    )


@main.command()
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the generated data.")
def sandbox(port: int, seed: int) -> None:
    """Run the Pipedrive sandbox alone, with seeded data, for developing consumers offline."""
    from daemon.dev.sandbox import run_standalone

    run_standalone(port=port, seed=seed)


def _register_actions() -> None:
    from daemon.cli import actions

    for group in (actions.deals, actions.stages, actions.activities):
        main.add_command(group)


def _register_operator_commands() -> None:
    from daemon.cli import outbox, subscriptions

    for command in (
        outbox.dead_letters,
        outbox.retry_now,
        subscriptions.subscriptions,
        subscriptions.secrets_group,
        subscriptions.schema,
    ):
        main.add_command(command)


_register_actions()
_register_operator_commands()
