"""`pipedrive-triggers status`: what an operator needs to see, read from the database alone
(so it works whether the daemon runs or not), as a table for people or JSON for scripts, and
an exit status that says the same: 0 all well, 1 something needs a look."""

from __future__ import annotations

import collections
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import times
from daemon.config import Config
from daemon.db import feed_store, health_store, instances, instant_webhooks, leases, outbox
from daemon.model import endpoint_health
from daemon.model import subscription_state as state_model
from daemon.pipedrive import account_usage, rate_limit
from daemon.polling import change_feed, forecast, plan
from daemon.status import drift

EXIT_OK = 0
EXIT_NEEDS_ATTENTION = 1  # not running, or a subscription failing, paused, disabled, or dead


@dataclass(frozen=True)
class Report:
    now: datetime
    daemon: instances.Liveness
    subscriptions: list[dict[str, Any]]  # what `status --json` prints
    accounts: list[dict[str, Any]]
    replicas: list[dict[str, Any]] = field(default_factory=list)  # `status --json --instances`
    # Replicas that run another config than the others, by the fingerprint each reported.
    config_differs: dict[str, str] = field(default_factory=dict)
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
    # Health recorded for another callback_url than the config's is not this endpoint's.
    endpoints = {sub.name: sub.endpoint for sub in config.subscriptions}
    healths = {
        name: endpoint_health.for_endpoint(health, endpoints.get(name))
        for name, health in (await health_store.load(engine)).items()
    }
    waiting = await outbox.pending_stats(engine)
    future = await feed_store.future_dated(engine, change_feed.listing_time(None, now))
    failing = {name: w.last_error for name, w in waiting.items() if w.last_error}
    liveness = await instances.liveness(engine, now)
    holders = await account_holders(engine, now)
    accounts = await account_rows(config, engine, now, holders)
    intervals = {
        sub.name: feed.interval_s
        for feed in plan.feeds(config, forecast.fitted_intervals(config))
        for sub in feed.subscriptions
    }
    configured = [sub.name for sub in config.subscriptions]
    # Not in the config but with queued events or dead letters: kept, not delivered.
    orphans = {o.subscription: o for o in drift.orphans(set(configured), counts, states)}
    by_name = {sub.name: sub for sub in config.subscriptions}
    pauses = _pauses(config, states, now)
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
        pause = pauses.get(sub_config.account) if sub_config else None
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
                # The replica holding the account's lease: the one that polls it now.
                "polled_by": holders.get(sub_config.account) if sub_config else None,
                # Pipedrive's 429 holds every call of the account until then, and why.
                "paused_until": _iso(pause[0]) if pause else None,
                "pause_reason": pause[1] if pause else None,
                # Items of its feed dated ahead of now: delivered, but holding no watermark.
                "future_dated_items": future.get(
                    (sub_config.account, sub_config.definition.object.name), 0
                )
                if sub_config
                else 0,
            }
        )
    held = collections.Counter(holders.values())
    replicas = [r.as_json(now, held.get(r.instance, 0)) for r in liveness.replicas]
    return Report(
        now,
        liveness,
        rows,
        accounts,
        verdicts=verdicts,
        replicas=replicas,
        config_differs=_config_differs(liveness),
    )


async def account_rows(
    config: Config, engine: AsyncEngine, now: datetime, holders: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """`status --accounts`: per account, today's Pipedrive usage, the company's daily token
    budget as Pipedrive's headers last said it today (`daily_tokens_remaining`,
    `daily_tokens_limit`, `daily_seen_at`: None when not seen), the replica polling it, and
    its instant-mode webhook (None where instant mode is off for it)."""
    if holders is None:
        holders = await account_holders(engine, now)
    rows = await account_usage.load_today(engine, [a.name for a in config.accounts], now)
    registered = await instant_webhooks.load_all(engine)
    today = now.date().isoformat()
    for row in rows:
        name = str(row["account"])
        row["polled_by"] = holders.get(name)
        instant = config.instant is not None and config.account(name).instant
        reg = registered.get(name) if instant else None
        row["instant"] = instant
        row["webhook_id"] = reg.webhook_id if reg else None
        row["webhook_state"] = reg.state if reg else None
        row["webhook_error"] = reg.last_error if reg else None
        row["last_nudge_at"] = _iso(reg.last_nudge_at) if reg else None
        row["nudges_today"] = reg.nudges_today if reg and reg.nudges_day == today else 0
        # Changes polling found that no webhook call announced (Pipedrive banned or lost it).
        row["unannounced_changes"] = reg.unannounced if reg else 0
        row["last_unannounced_at"] = _iso(reg.unannounced_at) if reg else None
    return rows


def daily_tokens(row: Mapping[str, Any]) -> str:
    """An account row's daily budget for people: "remaining/limit", "remaining", or "-"."""
    remaining, limit = row.get("daily_tokens_remaining"), row.get("daily_tokens_limit")
    if remaining is None:
        return "-"
    return f"{remaining}/{limit}" if limit is not None else str(remaining)


async def account_holders(engine: AsyncEngine, now: datetime) -> dict[str, str]:
    """Per account, the replica whose lease on it has not run out."""
    return {
        account: row.holder
        for row in await leases.read_all(engine)
        if row.held(now)
        and row.holder is not None
        and (account := leases.lease_account(row.name)) is not None
    }


def _config_differs(liveness: instances.Liveness) -> dict[str, str]:
    """The running replicas whose config is not the one most of them run (all of them when
    there is no majority), with the fingerprint each reported."""
    running = [r for r in liveness.live if r.config_fingerprint is not None]
    counts = collections.Counter(r.config_fingerprint for r in running)
    if len(counts) < 2:
        return {}
    [(common, times_seen)] = counts.most_common(1)
    has_majority = list(counts.values()).count(times_seen) == 1
    return {
        r.instance: r.config_fingerprint or ""
        for r in running
        if not has_majority or r.config_fingerprint != common
    }


def _pauses(
    config: Config, states: Mapping[str, feed_store.SubscriptionState], now: datetime
) -> dict[str, tuple[datetime, str]]:
    """Per account, the 429 pause still running that a feed's last error names (the daemon
    holds it in memory; a cycle it fails says until when and why): shown on every feed of
    the account, also those whose cycle has not come round yet."""
    found: dict[str, tuple[datetime, str]] = {}
    for sub in config.subscriptions:
        state = states.get(sub.name)
        pause = rate_limit.parse_pause(state.last_error) if state else None
        if pause is None or pause[0] <= now:
            continue
        if sub.account not in found or pause[0] > found[sub.account][0]:
            found[sub.account] = pause
    return found


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else times.format_age(seconds)


def _clock(iso: str | None, now: datetime) -> str:
    # A row holds what `--json` prints; the table shows the same instant for people, briefly.
    return times.format_wall_short(times.parse_rfc3339(iso), now) if iso else "-"


_STYLE = {
    state_model.State.OK: "green",
    state_model.State.FAILING: "red",
    state_model.State.DISABLED: "red",
}  # the others yellow

_COLUMNS = (
    "subscription", "trigger", "state", "last poll", "next poll", "lag", "pending",
    "retrying", "oldest", "next attempt", "dead",
)  # fmt: skip
# A terminal too narrow for every column loses these first; never the name or the state.
_DROPPABLE = (
    "oldest", "next attempt", "retrying", "next poll", "lag", "trigger", "dead", "pending",
    "last poll",
)  # fmt: skip
_UNLIMITED = 1_000_000  # a pipe's width: rich then neither wraps nor truncates


def _cells(report: Report) -> list[dict[str, str]]:
    rows = []
    for row, verdict in zip(report.subscriptions, report.verdicts, strict=True):
        poll = _clock(row["last_poll_at"], report.now)
        if row["last_poll_at"]:
            poll += f" {verdict.feed.label}"
        rows.append(
            {
                "subscription": row["subscription"],
                "trigger": row["trigger"] or "-",
                "state": f"[{_STYLE.get(verdict.state, 'yellow')}]{verdict.state.label}[/]",
                "last poll": poll,
                "next poll": _clock(row["next_poll_at"], report.now),
                "lag": _age(row["lag_seconds"]),
                "pending": str(row["pending"]),
                "retrying": str(row["retrying"]),
                "oldest": _age(row["oldest_pending_age_seconds"]),
                "next attempt": _clock(row["next_attempt_at"], report.now),
                "dead": str(row["dead_letters"]),
            }
        )
    return rows


def _table(cells: list[dict[str, str]], columns: list[str]) -> Table:
    # Every cell on one line: a cut state reads as another state, a cut name as another name.
    table = Table(title="subscriptions (times UTC)", title_justify="left", expand=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="fold")
    for row in cells:
        table.add_row(*(row[column] for column in columns))
    return table


def _natural_width(table: Table) -> int:
    console = Console(file=io.StringIO(), width=_UNLIMITED)
    return Measurement.get(console, console.options, table).maximum


def _fitted(cells: list[dict[str, str]], width: int) -> tuple[Table, list[str], int]:
    """The table with as many columns as fit `width` (dropping the least needed first), the
    columns left out, and the width to print it at: its own, when even the name and the
    state alone are wider than the terminal (the terminal wraps; nothing is cut)."""
    columns = list(_COLUMNS)
    hidden: list[str] = []
    table = _table(cells, columns)
    for column in _DROPPABLE:
        if _natural_width(table) <= width:
            break
        columns.remove(column)
        hidden.append(column)
        table = _table(cells, columns)
    return table, hidden, max(width, _natural_width(table))


def _webhook(account: Mapping[str, Any]) -> str:
    if not account["instant"]:
        return "off"
    if account["webhook_state"] is None:
        return "not checked yet"
    if account["webhook_id"] is not None and account["webhook_state"] == "registered":
        return f"#{account['webhook_id']} registered"
    return str(account["webhook_state"])


def _replicas_table(report: Report) -> Table:
    table = Table(title="replicas", title_justify="left")
    for column in ("instance", "host", "pid", "started", "heartbeat", "accounts", "state"):
        table.add_column(column, no_wrap=True)
    for replica in report.replicas:
        table.add_row(
            replica["instance"],
            replica["host"],
            str(replica["pid"]),
            _clock(replica["started_at"], report.now),
            _clock(replica["heartbeat_at"], report.now),
            str(replica["accounts"]),
            replica["state"],
        )
    return table


def render(report: Report, width: int | None = None) -> str:
    """The table a person reads: fitted to a terminal `width` columns wide, or, with None (a
    pipe, a file), whole, each row on one line however long."""
    out = io.StringIO()
    cells = _cells(report)
    hidden: list[str] = []
    if width is None:
        table, width = _table(cells, list(_COLUMNS)), _UNLIMITED
    else:
        table, hidden, width = _fitted(cells, width)
    console = Console(file=out, width=width, highlight=False)
    console.print(report.daemon.describe())
    if report.replicas:
        console.print(_replicas_table(report))
    if report.config_differs:
        console.print(
            "  replicas running another config (finish the rollout): "
            + ", ".join(f"{name} ({digest})" for name, digest in report.config_differs.items())
        )
    console.print(table)
    if hidden:
        console.print(
            f"  ({', '.join(hidden)} left out to fit the terminal: "
            "`status | cat` or `status --json` shows every column)"
        )
    for row, verdict in zip(report.subscriptions, report.verdicts, strict=True):
        if verdict.reason:
            since = f" since {_clock(row['state_since'], report.now)}" if row["state_since"] else ""
            console.print(
                f"  {row['subscription']}: {verdict.state.label}{since}: {verdict.reason}"
            )
        if row["paused_until"]:
            console.print(
                f"  {row['subscription']}: Pipedrive calls paused until "
                f"{_clock(row['paused_until'], report.now)}: {row['pause_reason']}"
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
    columns = ["account", "polled by", "calls", "tokens", "rate-limit waits", "daily tokens left"]
    instant = any(account["instant"] for account in report.accounts)
    if instant:
        columns += ["webhook", "last nudge", "nudges"]
    for column in columns:
        accounts.add_column(column)
    for account in report.accounts:
        line: list[str] = [
            str(account["account"]),
            account["polled_by"] or "-",
            str(account["calls_today"]),
            str(account["tokens_today"]),
            str(account["rate_limit_waits"]),
            daily_tokens(account),
        ]
        if instant:
            line += [
                _webhook(account),
                _clock(account["last_nudge_at"], report.now),
                str(account["nudges_today"]),
            ]
        accounts.add_row(*line)
    console.print(accounts)
    for account in report.accounts:
        if account["webhook_error"]:
            console.print(f"  {account['account']}: webhook: {account['webhook_error']}")
        if account["unannounced_changes"]:
            console.print(
                f"  {account['account']}: {account['unannounced_changes']} change(s) found only "
                "by reconciliation (no webhook call announced them), the last at "
                f"{_clock(account['last_unannounced_at'], report.now)}"
            )
    return out.getvalue()
