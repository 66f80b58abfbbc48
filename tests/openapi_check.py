"""Our client's requests, checked against Pipedrive's own v2 OpenAPI file.

The spec is patched only where it is looser or stricter than the API (see `_patch`):
- `include_fields` and `status` are documented as comma lists but typed as one enum value;
- request bodies get `additionalProperties: false`, because API v2 refuses unknown keys
  ("Parameter '<key>' is not allowed for this request", pipedrive/client-nodejs#651);
- every operation also allows OAuth, which openapi-core warns about; we authenticate by token.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

from daemon.pipedrive import costs
from tests.schema_check import SHARED_DIR

SPEC_DIR = Path(os.environ.get("PIPEDRIVE_OPENAPI_DIR", str(SHARED_DIR / "pipedrive-openapi")))
V2_FILE = SPEC_DIR / "pipedrive-v2.2026-08-18.yaml"
V1_FILE = SPEC_DIR / "pipedrive-v1.2026-08-18.yaml"
SPEC_HOST = "https://api.pipedrive.com"
V2_PREFIX = "/api/v2"
COMMA_LIST_PARAMS = ("include_fields", "status")
# Lookups read users from v1 (API v2 has no users endpoint), and event ids the company from
# v1's `users/me`, once per client; only those v1 calls are expected.
EXPECTED_V1_CALLS = {("GET", "/v1/users"), ("GET", "/v1/users/me"), ("GET", "/v1/users/{id}")}


def _comma_list(schema: dict[str, Any]) -> dict[str, Any]:
    choice = "|".join(re.escape(value) for value in schema["enum"])
    return {"type": "string", "pattern": f"^({choice})(,({choice}))*$"}


def each_object(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a spec fragment, depth first, for patches applied throughout it."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from each_object(value)
    elif isinstance(node, list):
        for value in node:
            yield from each_object(value)


def _closed(schema: Any) -> None:
    for node in each_object(schema):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False


def _patch(raw: dict[str, Any]) -> dict[str, Any]:
    patched = copy.deepcopy(raw)
    for item in patched["paths"].values():
        for method, operation in item.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            operation["security"] = [{"api_key": []}]
            for parameter in operation.get("parameters", []):
                if parameter["name"] in COMMA_LIST_PARAMS and "enum" in parameter["schema"]:
                    parameter["schema"] = _comma_list(parameter["schema"])
            if "requestBody" in operation:
                _closed(operation["requestBody"])
    return patched


@functools.cache
def load_v2_spec() -> OpenAPI:
    """The patched v2 spec, loaded once per test session (about a second)."""
    with V2_FILE.open() as handle:
        raw = yaml.load(handle, Loader=yaml.CSafeLoader)
    return OpenAPI.from_dict(_patch(raw), config=Config(spec_validator_cls=None))


def assert_requests_match_spec(spec: OpenAPI, sent: list[httpx.Request]) -> None:
    """Each request validates against its v2 path+method; v1 is only the users lookups."""
    assert sent, "no request was captured"
    for request in sent:
        path = request.url.path
        if not path.startswith(V2_PREFIX):
            assert (request.method, costs.route(path)) in EXPECTED_V1_CALLS, path
            continue
        spec.validate_request(
            MockRequest(
                SPEC_HOST,
                request.method,
                path,
                args=dict(httpx.QueryParams(request.url.query)),
                headers=dict(request.headers),
                data=request.content or None,
            )
        )
