"""Operator switches and consumer tooling on the command line: `subscriptions enable/disable/
rename`, `secrets generate` and `schema TRIGGER` (the JSON Schema of a trigger's webhook body)."""

from __future__ import annotations

import base64
import json
import secrets as secrets_module
from datetime import UTC, datetime
from pathlib import Path

import click

from daemon import config as config_module
from daemon import times, triggers
from daemon.cli import plumbing
from daemon.db import health_store, instance_lock
from daemon.db import rename as rename_module
from daemon.errors import ArgumentError
from daemon.model import endpoint_health
from daemon.triggers import webhook_schema

SECRET_BYTES = 32  # Standard Webhooks: between 24 and 64 random bytes
JSON_INDENT = 2


def _switch(ctx: click.Context, name: str, reason: str | None) -> endpoint_health.Health:
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    known = [s.name for s in config.subscriptions]
    if name not in known:
        plumbing.abort(
            ArgumentError(f"NAME: no subscription named {name!r} (known: {', '.join(known)})")
        )
    return plumbing.with_engine(
        config,
        lambda engine: health_store.set_disabled(engine, name, reason, datetime.now(UTC)),
    )


@click.group()
def subscriptions() -> None:
    """Switch a subscription's deliveries off and on (detection goes on either way)."""


@subscriptions.command("disable")
@click.argument("name", metavar="NAME")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Stop delivering NAME's events; they keep queueing and are sent after `enable`."""
    now = datetime.now(UTC)
    state = _switch(ctx, name, f"disabled by an operator at {times.format_iso_seconds(now)}")
    click.echo(f"subscription {name!r} disabled: {state.disabled_reason}")


@subscriptions.command("enable")
@click.argument("name", metavar="NAME")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Deliver NAME's events again (also after a 410 Gone or a pause)."""
    _switch(ctx, name, None)
    click.echo(f"subscription {name!r} enabled")


@subscriptions.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_context
def rename(ctx: click.Context, old: str, new: str) -> None:
    """Carry OLD's feed position, pending events and dead letters over to NEW.

    Stop the daemon, run this, rename the subscription in the config, start it again.
    """
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    if plumbing.guarded(lambda: instance_lock.is_held(config.database.url)):
        plumbing.fail(
            "the daemon is running on this database: stop it first", plumbing.EXIT_DATABASE
        )
    moved = plumbing.with_engine(config, lambda engine: rename_module.rename(engine, old, new))
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


@click.group("secrets")
def secrets_group() -> None:
    """Signing secrets."""


@secrets_group.command("generate")
def generate() -> None:
    """Print a new random signing secret in the Standard Webhooks format (whsec_...)."""
    raw = secrets_module.token_bytes(SECRET_BYTES)
    click.echo("whsec_" + base64.b64encode(raw).decode())


@click.command("schema")
@click.argument("trigger", required=False)
@click.option("--all", "everything", is_flag=True, help="Every trigger, one file each.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --all: the directory to write <trigger>.json into.",
)
def schema(trigger: str | None, everything: bool, out: Path | None) -> None:
    """Print the JSON Schema (draft 2020-12) of TRIGGER's webhook body."""
    if everything:
        if trigger is not None or out is None:
            raise click.UsageError("give TRIGGER, or --all --out DIR")
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(triggers.REGISTRY):
            text = json.dumps(webhook_schema.webhook_schema(name), indent=JSON_INDENT)
            (out / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {len(triggers.REGISTRY)} schemas to {out}")
        return
    if trigger is None or out is not None:
        raise click.UsageError("give TRIGGER, or --all --out DIR")
    if trigger not in triggers.REGISTRY:
        raise click.BadParameter(
            f"unknown trigger {trigger!r}; known: {', '.join(sorted(triggers.REGISTRY))}",
            param_hint="TRIGGER",
        )
    click.echo(json.dumps(webhook_schema.webhook_schema(trigger), indent=JSON_INDENT))
