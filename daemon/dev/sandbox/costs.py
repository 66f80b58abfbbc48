"""Token cost of each served operation: the spec's `x-token-cost`, checked by a unit test."""

from __future__ import annotations

# (method, route template) -> x-token-cost, from pipedrive-v2/v1 2026-08-18.
TOKEN_COSTS: dict[tuple[str, str], int] = {
    ("GET", "/api/v2/deals"): 10,
    ("POST", "/api/v2/deals"): 5,
    ("GET", "/api/v2/deals/{id}"): 1,
    ("PATCH", "/api/v2/deals/{id}"): 5,
    ("DELETE", "/api/v2/deals/{id}"): 3,
    ("GET", "/api/v2/activities"): 10,
    ("POST", "/api/v2/activities"): 5,
    ("GET", "/api/v2/activities/{id}"): 1,
    ("PATCH", "/api/v2/activities/{id}"): 5,
    ("DELETE", "/api/v2/activities/{id}"): 3,
    ("GET", "/api/v2/stages"): 5,
    ("GET", "/api/v2/stages/{id}"): 1,
    ("GET", "/api/v2/pipelines"): 5,
    ("GET", "/api/v2/pipelines/{id}"): 1,
    ("GET", "/api/v2/persons"): 10,
    ("POST", "/api/v2/persons"): 5,
    ("GET", "/api/v2/persons/{id}"): 1,
    ("PATCH", "/api/v2/persons/{id}"): 5,
    ("DELETE", "/api/v2/persons/{id}"): 3,
    ("GET", "/api/v2/organizations"): 10,
    ("POST", "/api/v2/organizations"): 5,
    ("GET", "/api/v2/organizations/{id}"): 1,
    ("PATCH", "/api/v2/organizations/{id}"): 5,
    ("DELETE", "/api/v2/organizations/{id}"): 3,
    ("GET", "/api/v2/dealFields"): 10,
    ("GET", "/api/v2/personFields"): 10,
    ("GET", "/api/v2/organizationFields"): 10,
    ("GET", "/api/v2/activityFields"): 10,
    ("GET", "/v1/users"): 20,
    ("GET", "/v1/users/me"): 2,
    ("GET", "/v1/users/{id}"): 2,
    ("GET", "/v1/activityTypes"): 20,
    ("GET", "/v1/notes"): 20,
    ("POST", "/v1/notes"): 10,
    ("GET", "/v1/notes/{id}"): 2,
    ("DELETE", "/v1/notes/{id}"): 6,
    ("GET", "/v1/leads"): 20,
    ("POST", "/v1/leads"): 10,
    ("GET", "/v1/leads/{id}"): 2,
    ("DELETE", "/v1/leads/{id}"): 6,
    ("GET", "/v1/webhooks"): 10,
    ("POST", "/v1/webhooks"): 10,
    ("DELETE", "/v1/webhooks/{id}"): 6,
}
# Unrouted requests still pass the gateway; charge them like the cheapest read.
UNKNOWN_ROUTE_COST = 1


def cost_of(method: str, template: str | None) -> int:
    if template is None:
        return UNKNOWN_ROUTE_COST
    return TOKEN_COSTS.get((method, template), UNKNOWN_ROUTE_COST)
