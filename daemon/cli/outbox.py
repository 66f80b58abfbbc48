"""The outbox on the command line: `dead-letters list/show/replay/purge` and `retry-now`.

Each command is one statement through `outbox_admin`, so it works while the daemon runs (its
next claim, within a second or two, picks replayed or hurried rows up) and while it is stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import config as config_module
from daemon import times
from daemon.cli import plumbing
from daemon.db import health_store, outbox, outbox_admin
from daemon.errors import ArgumentError
from daemon.polling import reread
from daemon.service import accounts

JSON_INDENT = 2
ERROR_WIDTH = 60  # of `last_error` in the table; `--json` and `show` print it whole


def _letter_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """ID arguments as dead letters' ids (`outbox_admin.parse_id`): a usage error, not a
    traceback, for "²", "١٢" or a number the database cannot hold."""
    given = value if isinstance(value, tuple) else (value,)
    ids = []
    for text in given:
        found = outbox_admin.parse_id(text)
        if found is None:
            raise click.BadParameter(
                f"{text!r} is not a dead letter's id: 1 to {outbox_admin.MAX_ID}, in ASCII digits",
                ctx,
                param,
            )
        ids.append(found)
    return tuple(ids) if isinstance(value, tuple) else ids[0]


def parse_moment(option: str, value: str | None, now: datetime) -> datetime | None:
    """An RFC 3339 time with a zone, or an age back from `now` ("2h", "3d")."""
    if value is None:
        return None
    try:
        return now - timedelta(seconds=times.parse_duration(value))
    except ValueError:
        pass
    try:
        return times.parse_rfc3339(value).astimezone(UTC)
    except ValueError:
        raise ArgumentError(
            f"{option}: must be an RFC 3339 time with a zone or an age such as 2h or 3d "
            f"(got {value!r})"
        ) from None


def _when(moment: datetime | None) -> str:
    return times.format_iso_seconds(moment) if moment else "-"


def _short(text: str | None) -> str:
    if not text:
        return "-"
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 3] + "..."


@click.group("dead-letters")
def dead_letters() -> None:
    """List, show, replay and purge events that ran out of attempts."""


subscription_option = click.option("--subscription", metavar="S", help="Only this subscription.")
since_option = click.option("--since", metavar="T", help="Died at or after T (RFC 3339 or 2h).")
until_option = click.option("--until", metavar="T", help="Died at or before T (RFC 3339 or 2h).")


@dead_letters.command("list")
@subscription_option
@since_option
@until_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def list_letters(
    ctx: click.Context,
    subscription: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Dead letters, oldest death first."""
    now = datetime.now(UTC)
    selection = plumbing.guarded(
        lambda: outbox_admin.Selection(
            subscription=subscription,
            since=parse_moment("--since", since, now),
            until=parse_moment("--until", until, now),
        )
    )
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    letters = plumbing.with_engine(config, lambda engine: outbox_admin.list_dead(engine, selection))
    if as_json:
        click.echo(json.dumps([letter.as_json() for letter in letters], indent=JSON_INDENT))
        return
    rows = [
        {
            "id": str(letter.id),
            "subscription": letter.subscription,
            "type": letter.type,
            "item": letter.item_id,
            "detected": _when(letter.detected_at),
            "died": _when(letter.dead_at),
            "attempts": str(letter.attempts),
            "status": str(letter.last_status or "-"),
            "last error": _short(_with_note(letter)),
        }
        for letter in letters
    ]
    columns = ["id", "subscription", "type", "item", "detected", "died", "attempts", "status"]
    columns.append("last error")
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


@dead_letters.command("show")
@click.argument("letter_id", metavar="ID", callback=_letter_ids)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def show_letter(ctx: click.Context, letter_id: int, as_json: bool) -> None:
    """One dead letter: its body and every attempt (time, status, duration, error, reply)."""
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    detail = plumbing.with_engine(config, lambda engine: outbox_admin.show_dead(engine, letter_id))
    if detail is None:
        plumbing.abort(ArgumentError(f"ID: no dead letter with id {letter_id}"))
    if as_json:
        out: dict[str, Any] = detail.letter.as_json()
        out["body"] = detail.body
        out["attempt_log"] = [attempt.as_json() for attempt in detail.attempt_log]
        click.echo(json.dumps(out, indent=JSON_INDENT, ensure_ascii=False))
        return
    letter = detail.letter
    click.echo(f"dead letter {letter.id}: {letter.type} item {letter.item_id}")
    click.echo(f"subscription: {letter.subscription}")
    click.echo(f"webhook-id:   {letter.webhook_id}")
    click.echo(f"detected:     {_when(letter.detected_at)}")
    click.echo(f"died:         {_when(letter.dead_at)} after {letter.attempts} attempts")
    click.echo(f"last error:   {letter.last_error or '-'}")
    if letter.note:
        click.echo(f"note:         {letter.note}")
    click.echo("body:")
    click.echo(f"  {detail.body}")
    click.echo("attempts:")
    for attempt in detail.attempt_log:
        click.echo(
            f"  #{attempt.attempt} {_when(attempt.at)} status {attempt.status or '-'} "
            f"{attempt.duration_ms} ms: {attempt.error or 'ok'}"
        )
        if attempt.reply:
            click.echo(f"    reply: {attempt.reply}")


def _with_note(letter: outbox_admin.DeadLetter) -> str | None:
    return f"{letter.note}; {letter.last_error}" if letter.note else letter.last_error


async def _replay(
    config: config_module.Config,
    engine: AsyncEngine,
    selection: outbox_admin.Selection,
    now: datetime,
) -> reread.Replayed:
    """Unreadable letters are read again from Pipedrive, so the replay needs the accounts."""
    async with accounts.open_accounts(config) as opened:
        return await reread.replay(engine, config, opened.clients, opened.caches, selection, now)


async def _replay_from_outbox(
    engine: AsyncEngine,
    selection: outbox_admin.Selection,
    now: datetime,
    selected: list[outbox_admin.DeadLetter],
) -> reread.Replayed:
    """No letter to read again from Pipedrive: one statement, no token needed. Superseded
    unreadable letters stay dead, as `reread.replay` would keep them."""
    done = reread.Replayed(resent=await outbox_admin.replay(engine, selection, now))
    for letter in selected:
        if letter.unreadable:
            done.kept.append((letter.id, f"not replayed: {letter.note}"))
    return done


def _say_replayed(done: reread.Replayed) -> None:
    click.echo(f"replayed {done.resent + len(done.reread)}")
    for letter_id in done.reread:
        click.echo(f"dead letter {letter_id}: its item was read again from Pipedrive and queued")
    for letter_id, why in done.kept:
        click.echo(f"dead letter {letter_id}: kept dead: {why}")


@dead_letters.command("replay")
@click.argument("letter_ids", metavar="ID...", nargs=-1, callback=_letter_ids)
@subscription_option
@since_option
@until_option
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.pass_context
def replay_letters(
    ctx: click.Context,
    letter_ids: tuple[int, ...],
    subscription: str | None,
    since: str | None,
    until: str | None,
    everything: bool,
) -> None:
    """Put dead letters back in the outbox with a fresh attempt count (same webhook-id)."""
    modes = sum((bool(letter_ids), subscription is not None, everything))
    if modes != 1:
        raise click.UsageError("give ID..., or --subscription S [--since T --until T], or --all")
    if (since or until) and subscription is None:
        raise click.UsageError("--since and --until go with --subscription")
    now = datetime.now(UTC)
    selection = plumbing.guarded(
        lambda: outbox_admin.Selection(
            ids=letter_ids,
            subscription=subscription,
            since=parse_moment("--since", since, now),
            until=parse_moment("--until", until, now),
        )
    )
    config = plumbing.load_config(ctx, config_module.load_without_secrets)

    async def look(
        engine: AsyncEngine,
    ) -> tuple[dict[int, str], list[outbox_admin.DeadLetter]]:
        states = await outbox_admin.states_of(engine, letter_ids)
        return states, await outbox_admin.list_dead(engine, selection)

    states, selected = plumbing.with_engine(config, look)
    if any(letter.unreadable and letter.superseded_by is None for letter in selected):
        # Reading an unreadable letter's item again asks Pipedrive: that needs the token.
        full = plumbing.load_config(ctx)
        done = plumbing.with_engine(full, lambda engine: _replay(full, engine, selection, now))
    else:
        done = plumbing.with_engine(
            config, lambda engine: _replay_from_outbox(engine, selection, now, selected)
        )
    _say_replayed(done)
    for letter_id in sorted(set(letter_ids)):
        state = states.get(letter_id)
        if state is not None and state != "dead":
            click.echo(f"dead letter {letter_id}: not dead ({state}): nothing to do")
    unknown = sorted(set(letter_ids) - set(states))
    if unknown:
        plumbing.abort(ArgumentError(f"ID: no dead letter with id {', '.join(map(str, unknown))}"))


@dead_letters.command("purge")
@click.option(
    "--older-than", "older_than", required=True, metavar="DURATION", help="e.g. 30d; 0s: all."
)
@subscription_option
@click.pass_context
def purge_letters(ctx: click.Context, older_than: str, subscription: str | None) -> None:
    """Delete dead letters that died more than DURATION ago (and their attempts)."""
    try:
        age = times.parse_duration(older_than)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    if age < 0:
        raise click.BadParameter("must not be negative", param_hint="--older-than")
    now = datetime.now(UTC)
    selection = outbox_admin.Selection(
        subscription=subscription, until=now - timedelta(seconds=age)
    )
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    count = plumbing.with_engine(config, lambda engine: outbox_admin.purge(engine, selection))
    click.echo(f"purged {count}")


@dataclass(frozen=True)
class _Hurried:
    moved: dict[str, int]  # per subscription, events whose backoff was cut short
    resumed: list[str]  # paused subscriptions whose pause ended
    disabled: list[str]  # disabled ones in scope: they stay so
    pending: dict[str, int]


async def _retry_now(engine: AsyncEngine, now: datetime, subscription: str | None) -> _Hurried:
    healths = await health_store.load(engine)
    resumed = await health_store.end_pauses(engine, now, subscription)
    moved = await outbox_admin.retry_now(engine, now, subscription)
    counts = await outbox.counts(engine)
    disabled = sorted(
        name
        for name, health in healths.items()
        if health.state == "disabled" and subscription in (None, name)
    )
    return _Hurried(moved, resumed, disabled, {n: c.pending for n, c in counts.items()})


@click.command("retry-now")
@subscription_option
@click.pass_context
def retry_now(ctx: click.Context, subscription: str | None) -> None:
    """Make pending events due at once and end pauses (the consumer is back).

    A paused subscription resumes: all its pending events go out now, not one probe at a time.
    A disabled one stays disabled; `subscriptions enable NAME` is its switch."""
    now = datetime.now(UTC)
    config = plumbing.load_config(ctx, config_module.load_without_secrets)
    done = plumbing.with_engine(config, lambda engine: _retry_now(engine, now, subscription))
    # A resumed subscription's events were due already, held by the pause: they count too.
    count = sum(n for name, n in done.moved.items() if name not in done.disabled)
    count += sum(done.pending.get(name, 0) - done.moved.get(name, 0) for name in done.resumed)
    click.echo(f"made {count} pending events due now")
    for name in done.resumed:
        click.echo(
            f"subscription {name!r}: pause ended: its {done.pending.get(name, 0)} pending "
            "events go out now"
        )
    for name in (n for n in done.disabled if done.pending.get(n, 0)):
        click.echo(
            f"subscription {name!r} stays disabled ({done.pending.get(name, 0)} pending): "
            f"`pipedrive-triggers subscriptions enable {name}` resumes it"
        )
