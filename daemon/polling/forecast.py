"""Pipedrive tokens a config will spend, and poll intervals stretched to fit the budget."""

from __future__ import annotations

import logging

from daemon.config import Config
from daemon.pipedrive import token_budget
from daemon.polling import poller

logger = logging.getLogger(__name__)


def plans(config: Config, account: str) -> list[token_budget.FeedPlan]:
    return [
        token_budget.FeedPlan(feed.object.name, feed.interval_s, feed.object.page_cost)
        for feed in poller.feeds(config)
        if feed.account == account
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


def fitted_intervals(config: Config) -> dict[tuple[str, str], float]:
    """Each feed's interval, stretched where an account's budget asks; logged once."""
    intervals: dict[tuple[str, str], float] = {}
    for account in config.accounts:
        if not account.daily_token_budget:
            continue
        account_plans = plans(config, account.name)
        try:
            stretches = token_budget.fit_to_budget(
                account_plans, account.daily_token_budget, account.budget_share
            )
        except ValueError as error:
            logger.warning(
                "account %r: %s; polling as configured",
                account.name,
                error,
                extra={"action": "budget.unfit"},
            )
            continue
        if stretches:
            logger.warning(
                "%s",
                token_budget.explain(
                    stretches,
                    token_budget.predicted_tokens_per_day(account_plans),
                    account.daily_token_budget,
                    account.budget_share,
                    account=account.name,
                ),
                extra={"action": "budget.stretched"},
            )
        for stretch in stretches:
            intervals[(account.name, stretch.object_type)] = stretch.new_interval_s
    return intervals
