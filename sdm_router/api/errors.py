"""Every error rendered as the OpenAI envelope ``{"error": {message, type, param, code}}``.

This is the only module that maps gateway errors to HTTP status codes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sdm_router.core import errors


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


STATUS_BY_ERROR: dict[type[errors.GatewayError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Abstained: 422,
    errors.Overloaded: 429,
    errors.UpstreamError: 502,
    errors.NoHealthyBackend: 503,
    errors.UpstreamTimeout: 504,
}


class EnvelopeResponse(JSONResponse):
    """A JSON error body encoded with orjson (429s under overload are a hot path too)."""

    def render(self, content: Any) -> bytes:
        """The body as compact JSON; text orjson cannot encode (a lone surrogate echoed from
        somewhere) is written with JSON escapes instead of failing the response."""
        try:
            return orjson.dumps(content)
        except TypeError:
            return json.dumps(content, separators=(",", ":")).encode()


# The string ``code`` of the errors the framework raises itself (OpenAI's codes are strings).
HTTP_ERROR_CODES: dict[int, str] = {
    400: "invalid_body",  # a body FastAPI could not parse (nested too deeply, not UTF-8, ...)
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def status_of(error: errors.GatewayError) -> int:
    """The HTTP status for a gateway error (500 for an unmapped subclass)."""
    for kind in type(error).__mro__:
        status = STATUS_BY_ERROR.get(kind)
        if status is not None:
            return status
    return 500


def envelope(
    message: str, error_type: str, param: str | None, code: str | int | None
) -> dict[str, Any]:
    """The OpenAI error body."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_body(error: errors.GatewayError) -> dict[str, Any]:
    """The envelope for a gateway error."""
    return envelope(error.message, error.error_type, error.param, error.code)


def internal_error_body(request_id: str) -> dict[str, Any]:
    """The envelope for a failure that is not a gateway error (a 500): no details leak."""
    return envelope(
        f"The server had an error while processing your request (request id {request_id}).",
        "server_error",
        None,
        "internal_error",
    )


def error_response(error: errors.GatewayError) -> JSONResponse:
    """A JSON error response with retry hints where a retry can help."""
    status = status_of(error)
    headers = {}
    if status in (429, 503):
        headers["retry-after"] = "1"
    if isinstance(error, errors.RateLimited):
        headers.update(error.headers)
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
        headers["retry-after-ms"] = str(max(1, math.ceil(error.retry_after * 1000)))
    if status in (400, 401, 403, 404, 422):
        headers["x-should-retry"] = "false"
    return EnvelopeResponse(error_body(error), status_code=status, headers=headers)


# request fields that are unions tagged by their ``type``: pydantic puts the tag in the location
# (``response_format.json_schema.json_schema.name``); the client's path has no such step
TAGGED_UNIONS = frozenset({"response_format"})


def _field_path(location: Sequence[Any]) -> str | None:
    parts = [part for part in location if part not in ("body", "query", "path")]
    parts = [
        part
        for index, part in enumerate(parts)
        if not (0 < index < len(parts) - 1 and parts[index - 1] in TAGGED_UNIONS)
    ]
    # pydantic adds the member type of a union (e.g. 'str', 'list[...]') to the location
    parts = [
        part
        for part in parts
        if not (
            isinstance(part, str)
            and ("[" in part or part in {"str", "int", "float", "bool", "list", "function-after"})
        )
    ]
    if not parts:
        return None
    path = str(parts[0])
    for part in parts[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_error(exc: RequestValidationError) -> errors.InvalidRequest:
    """The first validation problem as an ``InvalidRequest`` naming the field."""
    problems = exc.errors()
    if not problems:
        return errors.InvalidRequest("The request body is invalid.")
    first = problems[0]
    if first.get("type") == "json_invalid":
        return errors.InvalidRequest("The request body is not valid JSON.", code="invalid_json")
    param = _field_path(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if param is None and first.get("type") in ("model_attributes_type", "dict_type"):
        # a body that is not read as JSON: ``curl -d`` sends x-www-form-urlencoded, some
        # clients send no content-type at all
        text = "The body must be a JSON object sent with 'Content-Type: application/json'."
        return errors.InvalidRequest(text, code="invalid_content_type")
    if first.get("type") == "missing":
        text = f"Missing required parameter: '{param}'." if param else "The request has no body."
        return errors.InvalidRequest(text, param=param, code="missing_required_parameter")
    text = f"Invalid value for '{param}': {message}." if param else f"Invalid body: {message}."
    return errors.InvalidRequest(text, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the OpenAI envelope."""

    async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.GatewayError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        code = HTTP_ERROR_CODES.get(exc.status_code, "invalid_request")
        body = envelope(str(exc.detail), kind, None, code)
        return EnvelopeResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client hung up before the answer: nobody reads a body. 499 (nginx's "client
        # closed request"), so the request log and HTTP metrics do not count a server error.
        assert isinstance(exc, ClientDisconnected)
        return Response(status_code=499)

    app.add_exception_handler(errors.GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnected, on_client_gone)
    # Any other exception: a 500 from api/edge/middleware.RequestLogMiddleware, logged once.
