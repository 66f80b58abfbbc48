"""Pipedrive-shaped error bodies, and the exception handlers raise to send one."""

from __future__ import annotations

from typing import Any

ERROR_INFO = "Please check developers.pipedrive.com"
SCHEMA_ERROR_CODE = "ERR_SCHEMA_VALIDATION_FAILED"


class ApiError(Exception):
    """A request the sandbox refuses; `body` is sent as JSON with `status`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error')}")
        self.status = status
        self.body = body


def error_body(message: str) -> dict[str, Any]:
    """The generic envelope of the docs' responses page and the spec's error examples."""
    return {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }


def unauthorized_body() -> dict[str, Any]:
    """What the gateway answers for a missing or wrong token (spec + a live capture)."""
    return {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": ERROR_INFO,
    }


def rate_limited_body() -> dict[str, Any]:
    return {**error_body("Request over limit"), "errorCode": 429}


def bad_request(message: str) -> ApiError:
    return ApiError(400, error_body(message))


def not_found(message: str) -> ApiError:
    return ApiError(404, error_body(message))


def schema_error(key: str, problem: str) -> ApiError:
    """v2 strict-validation failure, shaped as reported in pipedrive/client-nodejs#651."""
    return ApiError(
        400,
        {
            "success": False,
            "error": f"Validation failed: {key}: {problem}",
            "code": SCHEMA_ERROR_CODE,
        },
    )
