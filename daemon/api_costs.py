"""What a Pipedrive call is called in metrics (its route template) and what it costs in tokens.

Pipedrive charges each call against the company's daily token budget by route (its OpenAPI
files' `x-token-cost`) but does not say so in the reply, so the daemon keeps its own table.
"""

from __future__ import annotations

import re

# Tokens by route shape, from Pipedrive's OpenAPI files (2026-08-18).
V2_LIST_COST = 10
V2_GET_COST = 1
V2_WRITE_COST = 5  # POST and PATCH
V2_DELETE_COST = 3
V1_LIST_COST = 20
V1_GET_COST = 2
V1_WRITE_COST = 10
# Listings that cost less than the other listings of their version.
SPECIAL_COSTS: dict[tuple[str, str], int] = {
    ("GET", "/api/v2/stages"): 5,
    ("GET", "/api/v2/pipelines"): 5,
    ("GET", "/v1/users"): 20,
}

# An id in a path: digits, or a UUID (leads). Never a label value: ids are unbounded.
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_V1_ALIAS = "/api/v1/"


def route(path: str) -> str:
    """The route template of a request path: `/api/v2/deals/25` -> `/api/v2/deals/{id}`."""
    path = path.split("?", 1)[0]
    if path.startswith(_V1_ALIAS):
        path = "/v1/" + path[len(_V1_ALIAS) :]
    segments = ["{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/")]
    return "/".join(segments)


def endpoint(method: str, path: str) -> str:
    """The `endpoint` label: method and route template, e.g. `GET /api/v2/deals`."""
    return f"{method.upper()} {route(path)}"


def token_cost(method: str, template: str) -> int:
    """Tokens one call of `method` on the route `template` spends."""
    method = method.upper()
    if (method, template) in SPECIAL_COSTS:
        return SPECIAL_COSTS[(method, template)]
    v1 = template.startswith("/v1/")
    if method == "GET":
        if template.endswith("{id}") or template.endswith("/me"):
            return V1_GET_COST if v1 else V2_GET_COST
        return V1_LIST_COST if v1 else V2_LIST_COST
    if method == "DELETE":
        return V2_DELETE_COST
    return V1_WRITE_COST if v1 else V2_WRITE_COST
