"""`pipedrive-triggers status`: what an operator needs to see, read from the database alone
(so it works whether the daemon runs or not), as a table for people or JSON for scripts, and
an exit status that says the same: 0 all well, 1 something needs a look."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.config import Config
from daemon.db import feed_store, health_store, heartbeat, outbox
from daemon.model import endpoint_health
from daemon.model import subscription_state as state_model
from daemon.pipedrive import account_usage
from daemon.polling import change_feed, forecast, poller
from daemon.status import drift

EXIT_OK = 0
EXIT_NEEDS_ATTENTION = 1  # not running, or a subscription failing, paused, disabled, or dead


@dataclass(frozen=True)
class Report:
    now: datetime
    daemon: heartbeat.Liveness
    subscriptions: list[dict[str, Any]]  # what `status --json` prints
    accounts: list[dict[str, Any]]
    verdicts: list[state_model.Verdict] = field(default_factory=list)  # one per subscription

    @property
    def exit_code(self) -> int:
        unwell = any(verdict.state.needs_attention for verdict in self.verdicts) or any(
            row["dead_letters"] for row in self.subscriptions
        )
        return EXIT_NEEDS_ATTENTION if unwell or not self.daemon.running else EXIT_OK


def _iso(moment: datetime | None) -> str | None:
    return times.format_iso(moment) if moment else None


def _seconds(delta: timedelta | None) -> float | None:
    return round(delta.total_seconds(), 1) if delta is not None else None


async def gather(config: Config, engine: AsyncEngine, now: datetime) -> Report:
    states = await feed_store.load_states(engine)
    counts = await outbox.counts(engine)
    healths = await health_store.load(engine)
    waiting = await outbox.pending_stats(engine)
    future = await feed_store.future_dated(engine, change_feed.listing_time(None, now))
    failing = {name: w.last_error for name, w in waiting.items() if w.last_error}
    liveness = await heartbeat.read(engine, now)
    accounts = await account_usage.load_today(engine, [a.name for a in config.accounts], now)
    intervals = {
        sub.name: feed.interval_s
        for feed in poller.feeds(config, forecast.fitted_intervals(config))
        for sub in feed.subscriptions
    }
    configured = [sub.name for sub in config.subscriptions]
    # Not in the config but with queued events or dead letters: kept, not delivered.
    orphans = {o.subscription: o for o in drift.orphans(set(configured), counts, states)}
    by_name = {sub.name: sub for sub in config.subscriptions}
    rows = []
    verdicts = []
    for name in [*configured, *sorted(orphans)]:
        sub_config = by_name.get(name)
        state = states.get(name)
        orphan = orphans.get(name)
        count = counts.get(name, outbox.SubscriptionCounts(0, 0, 0))
        pending = waiting.get(name, outbox.PendingStats(0, None, None))
        last_poll = state.last_poll_at if state else None
        verdict = state_model.derive(
            configured=sub_config is not None,
            poll_status=state.status if state else None,
            poll_error=state.last_error if state else None,
            polled_at=last_poll,
            health=healths.get(name),
            delivery_error=failing.get(name),
        )
        verdicts.append(verdict)
        interval = intervals.get(name)
        rows.append(
            {
                "subscription": name,
                "trigger": sub_config.trigger if sub_config else orphan and orphan.trigger,
                # The feed's own state, spelled as it always was: "not started".
                "status": verdict.feed.label,
                # Kept from the id-mark days: the highest id that existed at its start.
                "mark_id": state.id_floor if state else None,
                "position": _iso(state.position) if state else None,
                "last_poll_at": _iso(last_poll),
                "pending": count.pending,
                "delivered": count.delivered,
                "dead_letters": count.dead,
                "last_error": (
                    "not in the config: `subscriptions rename` carries it over"
                    if orphan
                    else (state.last_error if state else None)
                ),
                "state": verdict.json_state,
                "state_reason": verdict.reason,
                "state_since": _iso(verdict.since),
                "next_poll_at": _iso(last_poll + timedelta(seconds=interval))
                if last_poll and interval and sub_config
                else None,
                # How far behind Pipedrive's newest change this subscription has read.
                "lag_seconds": _seconds(now - state.position) if state else None,
                "retrying": pending.retrying,
                "oldest_pending_age_seconds": _seconds(now - pending.oldest_created_at)
                if pending.oldest_created_at
                else None,
                # A paused subscription's next POST is its next probe, whatever is due.
                "next_attempt_at": _iso(
                    endpoint_health.next_attempt(healths.get(name), pending.next_attempt_at)
                ),
                "last_delivery_error": failing.get(name),
                "daemon_running": liveness.running,
                # Items of its feed dated ahead of now: delivered, but holding no watermark.
                "future_dated_items": future.get(
                    (sub_config.account, sub_config.definition.object.name), 0
                )
                if sub_config
                else 0,
            }
        )
    return Report(now, liveness, rows, accounts, verdicts)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else times.format_age(seconds)


def _clock(iso: str | None) -> str:
    # A row holds what `--json` prints; the table shows the same instant for people.
    return times.format_wall(times.parse_rfc3339(iso)) if iso else "-"


_STYLE = {
    state_model.State.OK: "green",
    state_model.State.FAILING: "red",
    state_model.State.DISABLED: "red",
}  # the others yellow


def render(report: Report, width: int = 120) -> str:
    """The table a person reads in a terminal (rich, plain text when not a terminal)."""
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False)
    console.print(report.daemon.describe(report.now))
    table = Table(title="subscriptions", title_justify="left", expand=False)
    for column in (
        "subscription", "trigger", "state", "last poll", "next poll", "lag", "pending",
        "retrying", "oldest", "next attempt", "dead",
    ):  # fmt: skip
        table.add_column(column, no_wrap=column in ("subscription", "trigger"))
    for row, verdict in zip(report.subscriptions, report.verdicts, strict=True):
        poll = _clock(row["last_poll_at"])
        if row["last_poll_at"]:
            poll += f" {verdict.feed.label}"
        table.add_row(
            row["subscription"],
            row["trigger"] or "-",
            f"[{_STYLE.get(verdict.state, 'yellow')}]{verdict.state.label}[/]",
            poll,
            _clock(row["next_poll_at"]),
            _age(row["lag_seconds"]),
            str(row["pending"]),
            str(row["retrying"]),
            _age(row["oldest_pending_age_seconds"]),
            _clock(row["next_attempt_at"]),
            str(row["dead_letters"]),
        )
    console.print(table)
    for row, verdict in zip(report.subscriptions, report.verdicts, strict=True):
        if verdict.reason:
            since = f" since {_clock(row['state_since'])}" if row["state_since"] else ""
            console.print(
                f"  {row['subscription']}: {verdict.state.label}{since}: {verdict.reason}"
            )
        if row["last_delivery_error"]:
            console.print(
                f"  {row['subscription']}: last delivery error: {row['last_delivery_error']}"
            )
        elif row["last_error"] and verdict.state is state_model.State.OK:
            console.print(f"  {row['subscription']}: last error: {row['last_error']}")
        if row["future_dated_items"]:
            console.print(
                f"  {row['subscription']}: {row['future_dated_items']} item(s) of its feed "
                "dated in the future (update_time ahead of now): delivered; the feed reads on "
                "from the listing's time"
            )
    accounts = Table(title="accounts, today (UTC)", title_justify="left")
    for column in ("account", "calls", "tokens", "rate-limit waits"):
        accounts.add_column(column)
    for account in report.accounts:
        accounts.add_row(
            account["account"],
            str(account["calls_today"]),
            str(account["tokens_today"]),
            str(account["rate_limit_waits"]),
        )
    console.print(accounts)
    return out.getvalue()
