"""Pipedrive tokens and calls a minute a config will spend, and poll intervals stretched to
fit the budget. Said by `check-config` and, once at start, by `run`; other commands only
read the intervals."""

from __future__ import annotations

import logging
import math

from daemon.config import Config
from daemon.pipedrive import rate_limit, token_budget
from daemon.polling import plan

logger = logging.getLogger(__name__)

# check-config asks for each account's lines in turn: the feeds are worked out and grouped by
# account once per config (a frozen model), not once per account, so 1,000 accounts take a
# second, not minutes (each account's lines read its own feeds, never scan them all).
_memo: dict[bool, tuple[Config, dict[str, list[plan.Feed]]]] = {}


def _feeds(config: Config, account: str, *, fitted: bool = False) -> list[plan.Feed]:
    held = _memo.get(fitted)
    if held is None or held[0] is not config:
        by_account: dict[str, list[plan.Feed]] = {}
        for feed in plan.feeds(config, fitted_intervals(config) if fitted else None):
            by_account.setdefault(feed.account, []).append(feed)
        held = _memo[fitted] = (config, by_account)
    return held[1].get(account, [])


def plans(config: Config, account: str) -> list[token_budget.FeedPlan]:
    return [
        token_budget.FeedPlan(feed.object.name, feed.interval_s, feed.object.page_cost)
        for feed in _feeds(config, account)
    ]


def prediction_line(config: Config, account: str) -> str:
    """check-config's line: predicted tokens a day, and the share of the budget if set."""
    predicted = token_budget.predicted_tokens_per_day(plans(config, account))
    settings = config.account(account)
    line = f"predicted Pipedrive tokens/day: {predicted}"
    if settings.daily_token_budget:
        share = predicted / settings.daily_token_budget
        line += (
            f" ({share:.0%} of daily_token_budget {settings.daily_token_budget}; "
            f"budget_share {settings.budget_share:g})"
        )
    return line


def _stretches(config: Config) -> dict[str, list[token_budget.Stretch] | str]:
    """Per account with a budget: its stretches, or why none can fit (a message)."""
    found: dict[str, list[token_budget.Stretch] | str] = {}
    for account in config.accounts:
        if not account.daily_token_budget:
            continue
        try:
            found[account.name] = token_budget.fit_to_budget(
                plans(config, account.name), account.daily_token_budget, account.budget_share
            )
        except ValueError as error:
            found[account.name] = f"account {account.name!r}: {error}; polling as configured"
    return found


def fitted_intervals(config: Config) -> dict[tuple[str, str], float]:
    """Each feed's interval, stretched where an account's budget asks (quiet: what was
    stretched is said by `startup_warnings`)."""
    intervals: dict[tuple[str, str], float] = {}
    for account, stretches in _stretches(config).items():
        if isinstance(stretches, str):
            continue
        for stretch in stretches:
            intervals[(account, stretch.object_type)] = stretch.new_interval_s
    return intervals


def _budget_warnings(config: Config) -> list[str]:
    lines = []
    for name, stretches in _stretches(config).items():
        if isinstance(stretches, str):
            lines.append(stretches)
        elif stretches:
            account = config.account(name)
            assert account.daily_token_budget is not None
            lines.append(
                token_budget.explain(
                    stretches,
                    token_budget.predicted_tokens_per_day(plans(config, name)),
                    account.daily_token_budget,
                    account.budget_share,
                    account=name,
                )
            )
    return lines


def calls_per_minute(config: Config, account: str) -> float:
    """Listings a minute the account's feeds make in the steady state (after any stretch):
    one page per feed per cycle. Lookups come on top, only when events are built."""
    return sum(60 / feed.interval_s for feed in _feeds(config, account, fitted=True))


def _per_minute(value: float) -> str:
    return f"{round(value, 1):g}"


def calls_line(config: Config, account: str) -> str:
    """check-config's line: predicted calls a minute against the account's limits."""
    feeds = _feeds(config, account)
    limit = config.account(account).calls_per_minute
    return (
        f"predicted calls/min: {_per_minute(calls_per_minute(config, account))} listings "
        f"(one per watched object type per cycle; lookups of related objects come on top "
        f"when events are built) against calls_per_minute {limit}"
        f"; {len(feeds)} at once at most against Pipedrive's burst limit of "
        f"{rate_limit.BURST_CALLS} per {rate_limit.PIPEDRIVE_BURST_WINDOW_S} s (Lite plan)"
    )


def _calls_warnings(config: Config) -> list[str]:
    lines = []
    for account in config.accounts:
        feeds = _feeds(config, account.name, fitted=True)
        needed = sum(60 / feed.interval_s for feed in feeds)
        limit = account.calls_per_minute
        if needed <= limit:
            continue
        fitting = math.ceil(60 * len(feeds) / limit)  # every feed at this interval fits
        names = ", ".join(
            f"{s.name!r} ({s.poll_interval:g}s)"
            for feed in feeds
            for s in feed.subscriptions
            if s.poll_interval < fitting
        )
        lines.append(
            f"account {account.name!r}: polling needs {_per_minute(needed)} calls a minute, "
            f"over calls_per_minute = {limit}, so every feed of it would stall part of each "
            f"minute; these subscriptions would fit with poll_interval >= {fitting}s: {names}"
            " (or raise calls_per_minute, within your Pipedrive plan)"
        )
        if len(feeds) > rate_limit.BURST_CALLS:
            lines.append(
                f"account {account.name!r}: {len(feeds)} feeds may list at once, over "
                f"Pipedrive's burst limit of {rate_limit.BURST_CALLS} per "
                f"{rate_limit.PIPEDRIVE_BURST_WINDOW_S} s (Lite plan)"
            )
    return lines


def startup_warnings(config: Config) -> list[str]:
    """What the config asks beyond an account's budget or calls a minute, with the intervals
    that fit: printed by `check-config`, logged once by `run` at start."""
    return _budget_warnings(config) + _calls_warnings(config)


def log_startup_warnings(config: Config) -> None:
    for warning in startup_warnings(config):
        logger.warning("%s", warning, extra={"action": "budget.warning"})
