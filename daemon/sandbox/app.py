"""The sandbox's routes: Pipedrive v2 deals/activities/stages/pipelines/persons/organizations
and v1 users, answering from the in-memory `Store` with Pipedrive's envelopes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.sandbox import bodies, errors, queries, render
from daemon.sandbox.state import Store

Endpoint = Callable[[Request], Awaitable[Response]]


def ok(data: Any, next_cursor: str | None = None, paged: bool = False) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "data": data}
    if paged:
        body["additional_data"] = {"next_cursor": next_cursor}
    return JSONResponse(body)


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise errors.schema_error("body", "Request body must be valid JSON") from None


def _reject_params(params: Mapping[str, str], names: tuple[str, ...], route: str) -> None:
    for name in names:
        if name in params:
            raise errors.schema_error(name, f"Parameter '{name}' is not allowed for {route}")


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except errors.ApiError as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    return wrapper


def build_routes(store: Store) -> list[Route]:
    async def list_deals(request: Request) -> Response:
        params = _params(request)
        if params.get("filter_id"):
            raise errors.bad_request("filter_id is not implemented by the sandbox")
        query = queries.parse_list_query(
            params,
            ("id", "update_time", "add_time"),
            ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id"),
        )
        statuses = queries.csv_param(params, "status", queries.DEAL_STATUSES)
        include = queries.csv_param(params, "include_fields", render.DEAL_INCLUDE_FIELDS) or []
        with store.lock:
            now = store.now()
            listed = [
                deal
                for deal in store.deals.values()
                if queries.deal_listed(deal, statuses, store.deal_deleted_at.get(deal["id"]), now)
            ]
            page, next_cursor = queries.select(listed, query)
            data = [render.deal(deal, include, store.activities.values()) for deal in page]
        return ok(data, next_cursor, paged=True)

    async def get_deal(request: Request) -> Response:
        include = (
            queries.csv_param(_params(request), "include_fields", render.DEAL_INCLUDE_FIELDS) or []
        )
        deal_id = request.path_params["id"]
        with store.lock:
            deal = store.deals.get(deal_id)
            deleted_at = store.deal_deleted_at.get(deal_id)
            gone = deleted_at is not None and store.now() - deleted_at > queries.DELETED_VISIBLE_FOR
            if deal is None or gone:
                raise errors.not_found("Deal not found")
            return ok(render.deal(deal, include, store.activities.values()))

    async def add_deal(request: Request) -> Response:
        fields = bodies.validate(await _json_body(request), bodies.DEAL_FIELDS, ("title",))
        with store.lock:
            return ok(render.deal(store.create_deal(fields)))

    async def update_deal(request: Request) -> Response:
        fields = bodies.validate(await _json_body(request), bodies.DEAL_FIELDS)
        with store.lock:
            return ok(render.deal(store.update_deal(request.path_params["id"], fields)))

    async def list_activities(request: Request) -> Response:
        params = _params(request)
        if params.get("filter_id"):
            raise errors.bad_request("filter_id is not implemented by the sandbox")
        query = queries.parse_list_query(
            params,
            ("id", "update_time", "add_time", "due_date"),
            ("owner_id", "deal_id", "person_id", "org_id"),
        )
        done = queries.bool_param(params, "done")
        lead_id = params.get("lead_id") or None
        include = queries.csv_param(params, "include_fields", render.ACTIVITY_INCLUDE_FIELDS) or []
        with store.lock:
            candidates = [
                a
                for a in store.activities.values()
                if not a["is_deleted"]
                and (done is None or a["done"] == done)
                and (lead_id is None or a["lead_id"] == lead_id)
            ]
            page, next_cursor = queries.select(candidates, query)
            return ok([render.activity(a, include) for a in page], next_cursor, paged=True)

    async def get_activity(request: Request) -> Response:
        params = _params(request)
        include = queries.csv_param(params, "include_fields", render.ACTIVITY_INCLUDE_FIELDS) or []
        with store.lock:
            activity = store.activities.get(request.path_params["id"])
            if activity is None or activity["is_deleted"]:
                raise errors.not_found("Activity not found")
            return ok(render.activity(activity, include))

    async def add_activity(request: Request) -> Response:
        fields = bodies.validate(await _json_body(request), bodies.ACTIVITY_FIELDS)
        with store.lock:
            return ok(render.activity(store.create_activity(fields)))

    async def list_stages(request: Request) -> Response:
        params = _params(request)
        # Airbyte observed 400s for updated_since on stages and pipelines.
        _reject_params(params, ("updated_since", "updated_until"), "stages")
        query = queries.parse_list_query(
            params, ("id", "update_time", "add_time", "order_nr"), ("pipeline_id",), False
        )
        with store.lock:
            page, next_cursor = queries.select(store.stages.values(), query)
            return ok([render.plain(s) for s in page], next_cursor, paged=True)

    async def list_pipelines(request: Request) -> Response:
        params = _params(request)
        _reject_params(params, ("updated_since", "updated_until"), "pipelines")
        query = queries.parse_list_query(params, ("id", "update_time", "add_time"), (), False)
        with store.lock:
            page, next_cursor = queries.select(store.pipelines.values(), query)
            return ok([render.plain(p) for p in page], next_cursor, paged=True)

    async def list_persons(request: Request) -> Response:
        params = _params(request)
        query = queries.parse_list_query(
            params, ("id", "update_time", "add_time"), ("owner_id", "org_id")
        )
        deal_id = queries.int_param(params, "deal_id")
        with store.lock:
            persons = list(store.persons.values())
            if deal_id is not None:
                deal = store.deals.get(deal_id)
                persons = [p for p in persons if deal is not None and deal["person_id"] == p["id"]]
            page, next_cursor = queries.select(persons, query)
            return ok([render.plain(p) for p in page], next_cursor, paged=True)

    async def list_organizations(request: Request) -> Response:
        query = queries.parse_list_query(
            _params(request), ("id", "update_time", "add_time"), ("owner_id",)
        )
        with store.lock:
            page, next_cursor = queries.select(store.organizations.values(), query)
            return ok([render.plain(o) for o in page], next_cursor, paged=True)

    def get_one(table: Mapping[int, dict[str, Any]], name: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            with store.lock:
                record = table.get(request.path_params["id"])
                if record is None or record.get("is_deleted"):
                    raise errors.not_found(f"{name} not found")
                return ok(render.plain(record))

        return endpoint

    async def list_users(request: Request) -> Response:
        with store.lock:
            users = sorted(store.users.values(), key=lambda u: u["id"])
            return ok([render.user_v1(u, store.me_id) for u in users])

    async def get_me(request: Request) -> Response:
        with store.lock:
            return ok(render.user_v1(store.users[store.me_id], store.me_id, with_company=True))

    table: list[tuple[str, str, Endpoint]] = [
        ("GET", "/api/v2/deals", list_deals),
        ("POST", "/api/v2/deals", add_deal),
        ("GET", "/api/v2/deals/{id:int}", get_deal),
        ("PATCH", "/api/v2/deals/{id:int}", update_deal),
        ("GET", "/api/v2/activities", list_activities),
        ("POST", "/api/v2/activities", add_activity),
        ("GET", "/api/v2/activities/{id:int}", get_activity),
        ("GET", "/api/v2/stages", list_stages),
        ("GET", "/api/v2/stages/{id:int}", get_one(store.stages, "Stage")),
        ("GET", "/api/v2/pipelines", list_pipelines),
        ("GET", "/api/v2/pipelines/{id:int}", get_one(store.pipelines, "Pipeline")),
        ("GET", "/api/v2/persons", list_persons),
        ("GET", "/api/v2/persons/{id:int}", get_one(store.persons, "Person")),
        ("GET", "/api/v2/organizations", list_organizations),
        ("GET", "/api/v2/organizations/{id:int}", get_one(store.organizations, "Organization")),
        ("GET", "/v1/users", list_users),
        ("GET", "/v1/users/me", get_me),
    ]
    return [
        Route(path, _guarded(endpoint), methods=[method], name=f"{method} {path}")
        for method, path, endpoint in table
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    messages = {404: "Not found", 405: "Method not allowed"}
    message = messages.get(status, "Internal server error")
    return JSONResponse(errors.error_body(message), status_code=status)


def build_app(routes: list[Route]) -> Starlette:
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
