"""`pipedrive-triggers subscriptions ...`: changes to a subscription that the config alone
cannot express without losing its history."""

from __future__ import annotations

import click

from daemon import rename as rename_module


@click.group()
def subscriptions() -> None:
    """Manage subscriptions' state in the database."""


@subscriptions.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_context
def rename(ctx: click.Context, old: str, new: str) -> None:
    """Carry OLD's feed position, pending events and dead letters over to NEW.

    Stop the daemon, run this, rename the subscription in the config, start it again.
    """
    # Imported here, not at the top: cli.py imports this module while it is being imported.
    from daemon import cli, instance_lock, service
    from daemon import config as config_module

    config = cli.load_config(ctx, config_module.load_without_secrets)
    if instance_lock.is_held(config.database.url):
        cli.fail("the daemon is running on this database: stop it first", cli.EXIT_DATABASE)

    async def move() -> rename_module.Renamed:
        async with service.open_engine(config) as engine:
            return await rename_module.rename(engine, old, new)

    moved = cli.run_async(move)
    position = "feed position, " if moved.had_state else ""
    click.echo(
        f"renamed {old!r} to {new!r}: {position}{moved.pending} pending, "
        f"{moved.delivered} delivered and {moved.dead} dead events carried over"
    )
    names = {s.name for s in config.subscriptions}
    if new not in names:
        click.echo(
            f"now rename [[subscriptions]] {old!r} to {new!r} in {ctx.obj['config_path']}",
            err=True,
        )
