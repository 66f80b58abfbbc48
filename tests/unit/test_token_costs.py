"""Token costs: the packaged table is the OpenAPI files' `x-token-cost`, and every request the
daemon makes is priced by it."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from daemon.dev.sandbox import costs as sandbox_costs
from daemon.pipedrive import account_usage, costs
from tests.openapi_check import SPEC_DIR
from tools import generate_token_costs


def test_the_packaged_table_is_the_specs() -> None:
    table = resources.files("daemon.pipedrive").joinpath("token_costs.json")
    packaged = json.loads(table.read_text())
    assert packaged == generate_token_costs.costs(SPEC_DIR.parent)
    assert len(packaged) > 300  # every priced operation of v1 and v2, not only those we call


@pytest.mark.parametrize(
    ("method", "path", "cost"),
    [
        ("GET", "/api/v2/deals?updated_since=2026-12-01T00:00:00Z&limit=500", 10),
        ("GET", "/api/v2/deals/25", 1),
        ("GET", "/api/v2/stages", 5),
        ("GET", "/v1/leads/1f2e3d4c-5b6a-4789-8abc-def012345678", 2),  # a v1 item GET is 2
        ("GET", "/api/v1/users/me", 2),  # the v1 alias prefix
        ("GET", "/v1/users", 20),
        ("DELETE", "/v1/notes/7", 6),  # v1 deletes cost twice v2's
        ("DELETE", "/api/v2/deals/7", 3),
        ("GET", "/api/v2/deals/archived", 20),
        ("GET", "/api/v2/nothingHere", costs.UNPRICED_V2),
    ],
)
def test_request_paths_are_priced_by_their_route(method: str, path: str, cost: int) -> None:
    assert costs.path_cost(method, path) == cost


def test_the_sandbox_charges_what_the_daemon_counts() -> None:
    charged = sandbox_costs.TOKEN_COSTS
    assert {route: costs.token_cost(*route) for route in charged} == charged


def test_account_usage_counts_the_same_prices() -> None:
    usage = account_usage.Usage("main")
    usage.call("GET", "/v1/leads/1f2e3d4c-5b6a-4789-8abc-def012345678", "200")
    usage.call("GET", "/api/v2/deals?limit=500", "404")
    usage.call("GET", "/api/v2/deals?limit=500", "429")  # refused at the gateway: not charged
    usage.call("GET", "/api/v2/deals?limit=500", "timeout")
    taken = usage.take()
    assert (taken.calls, taken.tokens, usage.take().calls) == (4, 12, 0)
