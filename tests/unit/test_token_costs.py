"""Token costs by the spec's pattern, checked against the sandbox's table from the spec."""

from __future__ import annotations

from daemon import account_usage
from daemon.sandbox import costs


def test_token_cost_matches_every_operation_the_spec_prices() -> None:
    wrong = {
        (method, template): (account_usage.token_cost(method, template.replace("{id}", "42")), cost)
        for (method, template), cost in costs.TOKEN_COSTS.items()
        if account_usage.token_cost(method, template.replace("{id}", "42")) != cost
    }
    assert wrong == {}
    lead = "/v1/leads/1f2e3d4c-5b6a-4789-8abc-def012345678"
    assert account_usage.token_cost("GET", lead) == 1
