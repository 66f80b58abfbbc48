"""Pipedrive's success envelopes and the request plumbing shared by the v2 and v1 routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from daemon.dev.sandbox import errors

Endpoint = Callable[[Request], Awaitable[Response]]


def ok(
    data: Any, next_cursor: str | None = None, paged: bool = False, status: int = 200
) -> JSONResponse:
    """v2 envelope: `additional_data.next_cursor` on lists (null on the last page)."""
    body: dict[str, Any] = {"success": True, "data": data}
    if paged:
        body["additional_data"] = {"next_cursor": next_cursor}
    return JSONResponse(body, status_code=status)


def ok_v1(data: Any, additional_data: dict[str, Any] | None = None, status: int = 200) -> Response:
    """v1 envelope: `additional_data.pagination` on offset-paged lists."""
    body: dict[str, Any] = {"success": True, "data": data}
    if additional_data is not None:
        body["additional_data"] = additional_data
    return JSONResponse(body, status_code=status)


def params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise errors.schema_error("body", "Request body must be valid JSON") from None
