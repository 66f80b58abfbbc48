"""`/v1/webhooks` (the gateway maps `/api/v1/webhooks` here): list, create, delete, with the
v1 webhooks envelope (`status` beside `success`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from daemon.dev.sandbox import envelope
from daemon.dev.sandbox.envelope import Endpoint
from daemon.dev.sandbox.webhooks.registry import Registry


def _ok(data: Any = None, status: int = 200, with_data: bool = True) -> Response:
    body: dict[str, Any] = {"status": "ok", "success": True}
    if with_data:
        body["data"] = data
    return JSONResponse(body, status_code=status)


def table(registry: Registry) -> list[tuple[str, str, Endpoint]]:
    async def list_webhooks(request: Request) -> Response:
        return _ok(registry.listed())

    async def add_webhook(request: Request) -> Response:
        return _ok(registry.add(await envelope.json_body(request)), status=201)

    async def delete_webhook(request: Request) -> Response:
        registry.remove(request.path_params["id"])
        return _ok(with_data=False)  # the spec's 200: `{status, success}` only

    return [
        ("GET", "/v1/webhooks", list_webhooks),
        ("POST", "/v1/webhooks", add_webhook),
        ("DELETE", "/v1/webhooks/{id:int}", delete_webhook),
    ]
