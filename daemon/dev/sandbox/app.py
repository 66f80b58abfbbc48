"""The sandbox's v2 routes (deals, activities, stages, pipelines, persons, organizations and
their field definitions), answering from the in-memory `Store` with Pipedrive's envelopes; the
v1 routes live in `v1_routes`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.dev.sandbox import (
    bodies,
    contacts,
    custom_fields,
    envelope,
    errors,
    queries,
    render,
    v1_routes,
)
from daemon.dev.sandbox.envelope import Endpoint, ok
from daemon.dev.sandbox.state import Store


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


def _visible(
    store: Store, kind: str, records: Iterable[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    return [record for record in records if store.visible(kind, record["id"], now)]


def build_routes(store: Store, more: Sequence[tuple[str, str, Endpoint]] = ()) -> list[Route]:
    """Every served route; `more`: tables kept apart from the account's records (webhooks)."""

    def values_view(entity: str, params: Mapping[str, str]) -> Callable[[Any], dict[str, Any]]:
        """How custom_fields are served for this request (`custom_fields`,
        `include_option_labels`)."""
        keys = custom_fields.keys_param(params)
        labels = bool(queries.bool_param(params, "include_option_labels"))

        def shaped(record: Any) -> dict[str, Any]:
            out = dict(record)
            out["custom_fields"] = custom_fields.shown(
                store, entity, record["custom_fields"], keys, labels
            )
            return out

        return shaped

    async def list_deals(request: Request) -> Response:
        params = envelope.params(request)
        if params.get("filter_id"):
            raise errors.bad_request("filter_id is not implemented by the sandbox")
        query = queries.parse_list_query(
            params,
            ("id", "update_time", "add_time"),
            ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id"),
        )
        statuses = queries.csv_param(params, "status", queries.DEAL_STATUSES)
        include = queries.csv_param(params, "include_fields", render.DEAL_INCLUDE_FIELDS) or []
        view = values_view("deal", params)
        with store.lock:
            now = store.now()
            listed = [
                deal
                for deal in _visible(store, "deal", store.deals.values(), now)
                if queries.deal_listed(deal, statuses, store.deal_deleted_at.get(deal["id"]), now)
            ]
            page, next_cursor = queries.select(listed, query)
            data = [view(render.deal(deal, include, store.activities.values())) for deal in page]
        return ok(data, next_cursor, paged=True)

    async def get_deal(request: Request) -> Response:
        params = envelope.params(request)
        include = queries.csv_param(params, "include_fields", render.DEAL_INCLUDE_FIELDS) or []
        view = values_view("deal", params)
        deal_id = request.path_params["id"]
        with store.lock:
            deal = store.deals.get(deal_id)
            deleted_at = store.deal_deleted_at.get(deal_id)
            gone = deleted_at is not None and store.now() - deleted_at > queries.DELETED_VISIBLE_FOR
            if deal is None or gone or not store.visible("deal", deal_id):
                raise errors.not_found("Deal not found")
            return ok(view(render.deal(deal, include, store.activities.values())))

    async def add_deal(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.DEAL_FIELDS, ("title",))
        with store.lock:
            return ok(render.deal(store.create_deal(fields)))

    async def update_deal(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.DEAL_FIELDS)
        with store.lock:
            if not store.visible("deal", request.path_params["id"]):
                raise errors.not_found("Deal not found")
            return ok(render.deal(store.update_deal(request.path_params["id"], fields)))

    async def delete_deal(request: Request) -> Response:
        deal_id = request.path_params["id"]
        with store.lock:
            if not store.visible("deal", deal_id):
                raise errors.not_found("Deal not found")
            store.delete_deal(deal_id, strict=True)
            return ok({"id": deal_id})

    async def list_activities(request: Request) -> Response:
        params = envelope.params(request)
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
                for a in _visible(store, "activity", store.activities.values(), store.now())
                if not a["is_deleted"]
                and (done is None or a["done"] == done)
                and (lead_id is None or a["lead_id"] == lead_id)
            ]
            page, next_cursor = queries.select(candidates, query)
            return ok([render.activity(a, include) for a in page], next_cursor, paged=True)

    async def get_activity(request: Request) -> Response:
        params = envelope.params(request)
        include = queries.csv_param(params, "include_fields", render.ACTIVITY_INCLUDE_FIELDS) or []
        activity_id = request.path_params["id"]
        with store.lock:
            activity = store.activities.get(activity_id)
            hidden = not store.visible("activity", activity_id)
            if activity is None or activity["is_deleted"] or hidden:
                raise errors.not_found("Activity not found")
            return ok(render.activity(activity, include))

    async def add_activity(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.ACTIVITY_FIELDS)
        with store.lock:
            return ok(render.activity(store.create_activity(fields)))

    async def update_activity(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.ACTIVITY_FIELDS)
        activity_id = request.path_params["id"]
        with store.lock:
            if not store.visible("activity", activity_id):
                raise errors.not_found("Activity not found")
            return ok(render.activity(store.update_activity(activity_id, fields)))

    def delete_record(kind: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            record_id = request.path_params["id"]
            with store.lock:
                store.delete_record(kind, record_id)
            return ok({"id": record_id})

        return endpoint

    async def list_stages(request: Request) -> Response:
        params = envelope.params(request)
        # Airbyte observed 400s for updated_since on stages and pipelines.
        _reject_params(params, ("updated_since", "updated_until"), "stages")
        query = queries.parse_list_query(
            params, ("id", "update_time", "add_time", "order_nr"), ("pipeline_id",), False
        )
        with store.lock:
            page, next_cursor = queries.select(store.stages.values(), query)
            return ok([render.plain(s) for s in page], next_cursor, paged=True)

    async def list_pipelines(request: Request) -> Response:
        params = envelope.params(request)
        _reject_params(params, ("updated_since", "updated_until"), "pipelines")
        query = queries.parse_list_query(params, ("id", "update_time", "add_time"), (), False)
        with store.lock:
            page, next_cursor = queries.select(store.pipelines.values(), query)
            return ok([render.plain(p) for p in page], next_cursor, paged=True)

    async def list_persons(request: Request) -> Response:
        params = envelope.params(request)
        query = queries.parse_list_query(
            params, ("id", "update_time", "add_time"), ("owner_id", "org_id")
        )
        deal_id = queries.int_param(params, "deal_id")
        view = values_view("person", params)
        with store.lock:
            persons = _visible(store, "person", store.persons.values(), store.now())
            persons = [p for p in persons if not p["is_deleted"]]
            if deal_id is not None:
                deal = store.deals.get(deal_id)
                persons = [p for p in persons if deal is not None and deal["person_id"] == p["id"]]
            page, next_cursor = queries.select(persons, query)
            return ok([view(p) for p in page], next_cursor, paged=True)

    async def list_organizations(request: Request) -> Response:
        params = envelope.params(request)
        query = queries.parse_list_query(params, ("id", "update_time", "add_time"), ("owner_id",))
        view = values_view("organization", params)
        with store.lock:
            orgs = _visible(store, "organization", store.organizations.values(), store.now())
            page, next_cursor = queries.select([o for o in orgs if not o["is_deleted"]], query)
            return ok([view(o) for o in page], next_cursor, paged=True)

    def get_one(
        table: Mapping[int, dict[str, Any]], name: str, kind: str | None = None
    ) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            record_id = request.path_params["id"]
            view = values_view(kind, envelope.params(request)) if kind else render.plain
            with store.lock:
                record = table.get(record_id)
                hidden = kind is not None and not store.visible(kind, record_id)
                if record is None or record.get("is_deleted") or hidden:
                    raise errors.not_found(f"{name} not found")
                return ok(view(record))

        return endpoint

    async def add_person(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.PERSON_FIELDS, ("name",))
        with store.lock:
            return ok(render.plain(contacts.create_person(store, fields)))

    async def update_person(request: Request) -> Response:
        fields = bodies.validate(await envelope.json_body(request), bodies.PERSON_UPDATE_FIELDS)
        person_id = request.path_params["id"]
        with store.lock:
            if not store.visible("person", person_id):
                raise errors.not_found("Person not found")
            return ok(render.plain(contacts.update_person(store, person_id, fields)))

    async def add_organization(request: Request) -> Response:
        body = await envelope.json_body(request)
        fields = bodies.validate(body, bodies.ORGANIZATION_FIELDS, ("name",))
        with store.lock:
            return ok(render.plain(contacts.create_organization(store, fields)))

    async def update_organization(request: Request) -> Response:
        fields = bodies.validate(
            await envelope.json_body(request), bodies.ORGANIZATION_UPDATE_FIELDS
        )
        org_id = request.path_params["id"]
        with store.lock:
            if not store.visible("organization", org_id):
                raise errors.not_found("Organization not found")
            return ok(render.plain(contacts.update_organization(store, org_id, fields)))

    def list_fields(entity: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            params = envelope.params(request)
            query = queries.parse_list_query(params, ("id",), (), False)
            if query.sort_by != "id" or query.sort_direction != "asc" or query.ids is not None:
                raise errors.bad_request("Field lists take only limit, cursor, include_fields")
            allowed = custom_fields.INCLUDE_FIELDS[entity]
            include = queries.csv_param(params, "include_fields", allowed) or []
            with store.lock:
                everything = custom_fields.definitions(store, entity, include)
            # Definitions have codes, not ids: page them by position.
            numbered = [{"id": n, "field": f} for n, f in enumerate(everything, start=1)]
            page, next_cursor = queries.select(numbered, query)
            return ok([item["field"] for item in page], next_cursor, paged=True)

        return endpoint

    table: list[tuple[str, str, Endpoint]] = [
        ("GET", "/api/v2/deals", list_deals),
        ("POST", "/api/v2/deals", add_deal),
        ("GET", "/api/v2/deals/{id:int}", get_deal),
        ("PATCH", "/api/v2/deals/{id:int}", update_deal),
        ("DELETE", "/api/v2/deals/{id:int}", delete_deal),
        ("GET", "/api/v2/activities", list_activities),
        ("POST", "/api/v2/activities", add_activity),
        ("GET", "/api/v2/activities/{id:int}", get_activity),
        ("PATCH", "/api/v2/activities/{id:int}", update_activity),
        ("DELETE", "/api/v2/activities/{id:int}", delete_record("activity")),
        ("GET", "/api/v2/stages", list_stages),
        ("GET", "/api/v2/stages/{id:int}", get_one(store.stages, "Stage")),
        ("GET", "/api/v2/pipelines", list_pipelines),
        ("GET", "/api/v2/pipelines/{id:int}", get_one(store.pipelines, "Pipeline")),
        ("GET", "/api/v2/persons", list_persons),
        ("POST", "/api/v2/persons", add_person),
        ("GET", "/api/v2/persons/{id:int}", get_one(store.persons, "Person", "person")),
        ("PATCH", "/api/v2/persons/{id:int}", update_person),
        ("DELETE", "/api/v2/persons/{id:int}", delete_record("person")),
        ("GET", "/api/v2/organizations", list_organizations),
        ("POST", "/api/v2/organizations", add_organization),
        (
            "GET",
            "/api/v2/organizations/{id:int}",
            get_one(store.organizations, "Organization", "organization"),
        ),
        ("PATCH", "/api/v2/organizations/{id:int}", update_organization),
        ("DELETE", "/api/v2/organizations/{id:int}", delete_record("organization")),
        ("GET", "/api/v2/dealFields", list_fields("deal")),
        ("GET", "/api/v2/personFields", list_fields("person")),
        ("GET", "/api/v2/organizationFields", list_fields("organization")),
        ("GET", "/api/v2/activityFields", list_fields("activity")),
        *v1_routes.table(store),
        *more,
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
