"""What every command shares: exit codes, errors as one line, loading the config, and running a
coroutine on an open database, written once so the command modules only say what they do."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon import logs
from daemon.db import database
from daemon.errors import (
    ArgumentError,
    ConfigError,
    DatabaseError,
    PipedriveError,
    PipedriveTriggersError,
)

logger = logging.getLogger("daemon")

EXIT_CRASHED = 1
EXIT_CONFIG = 3
EXIT_DATABASE = 4

T = TypeVar("T")


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, and the exit code; a JSON log line under `--log-format json`."""
    if logs.is_json():
        logger.error("%s", message, extra={"action": "cli.failed"})
    else:
        click.echo(f"pipedrive-triggers: {message}", err=True)
    sys.exit(code)


def abort(error: PipedriveTriggersError) -> NoReturn:
    """Exit with the error's line(s) and its exit code: a config error lists every problem
    (exit 3), a database error exits 4, the others carry their own code (1 if none)."""
    if isinstance(error, ConfigError):
        for line in error.lines:
            click.echo(line, err=True)
        sys.exit(EXIT_CONFIG)
    if isinstance(error, DatabaseError):
        fail(str(error), EXIT_DATABASE)
    if isinstance(error, PipedriveError):
        fail(str(error), error.exit_code)
    fail(str(error), getattr(error, "exit_code", EXIT_CRASHED))


def guarded(action: Callable[[], T]) -> T:
    """Turn the project's errors into one clear line and a distinct exit code, no traceback."""
    try:
        return action()
    except PipedriveTriggersError as error:
        abort(error)


def load_config(
    ctx: click.Context,
    loader: Callable[[Path], config_module.Config] = config_module.load,
) -> config_module.Config:
    """The config file the group's `--config` names, read by `loader` (with or without the
    secrets' environment variables, or as `run` needs it)."""
    path = ctx.obj["config_path"]
    if path is None:
        fail(
            f"no config file: pass --config PATH or set {config_module.CONFIG_ENV_VAR}",
            EXIT_CONFIG,
        )
    return guarded(lambda: loader(path))


def run_async(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return guarded(lambda: asyncio.run(coroutine_factory()))


def with_engine(config: config_module.Config, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Open the config's database (refusing one at the wrong revision), await `work` on it,
    close it, and return what `work` returned; any error on the way is an exit code."""

    async def run() -> T:
        async with database.open_engine(config.database.url) as engine:
            return await work(engine)

    return run_async(run)


def pick_account(config: config_module.Config, name: str | None) -> str:
    """The account to act on: the one named, or the only one there is."""
    known = [account.name for account in config.accounts]
    listed = ", ".join(known) or "none"
    if name is None:
        if len(known) == 1:
            return known[0]
        raise ArgumentError(f"--account: required, the config has several accounts ({listed})")
    if name not in known:
        raise ArgumentError(f"--account: no account named {name!r} (known: {listed})")
    return name
