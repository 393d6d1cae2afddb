"""One place that turns exceptions into error responses.

OpenAI routes answer in OpenAI's error shape; `/v1/messages` in Anthropic's. Unexpected
exceptions are logged with their traceback and reach the client as a plain 500 that names the
request id, never the traceback.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.exchange import route_path
from gateway.errors import GatewayError, InvalidRequest, NotFound

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

# Anthropic's error `type` for each status, as its SDK expects.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_body(error: GatewayError) -> dict[str, Any]:
    """The error in Anthropic's wire shape."""
    kind = _ANTHROPIC_TYPES.get(error.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_response(request: Request, error: GatewayError) -> JSONResponse:
    """The response for a GatewayError, in the shape of the route's API."""
    exchange = getattr(request.state, "exchange", None)
    if exchange is not None:
        exchange.error_code = error.code
    anthropic = route_path(request).startswith("/v1/messages")
    body = anthropic_body(error) if anthropic else error.to_body()
    headers = {**error.headers, **_request_id_header(request)}
    return JSONResponse(body, status_code=error.status, headers=headers)


def invalid_body(exc: ValidationError) -> InvalidRequest:
    """A pydantic error as a 400 naming the first offending field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = f"{where}: {first['msg']}" if where else first["msg"]
    return InvalidRequest(f"Invalid request: {message}", param=where or None)


def validated(model: type[_M], raw: bytes, *, empty: bool = False) -> _M:
    """`raw` JSON as `model`, or a 400: one that says the body is not JSON (malformed, not
    UTF-8, a lone surrogate, nested too deeply), or one naming the first offending field.
    With `empty`, an empty body is the model's defaults."""
    try:
        if empty and not raw.strip():
            return model.model_validate({})
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = str(first.get("ctx", {}).get("error", "")) or first["msg"]
            raise InvalidRequest(
                "We could not parse the JSON body of your request. The body must be valid "
                f"JSON in UTF-8 ({reason})."
            ) from None
        raise invalid_body(exc) from None


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that keep every error in the API's own shape."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            error: GatewayError = InvalidRequest(
                f"Method {request.method} is not allowed on {request.url.path}.",
                code="method_not_allowed",
            )
            response = error_response(request, error)
            response.status_code = 405
            return response
        return error_response(request, NotFound(f"Unknown route {request.url.path}."))

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A path or query parameter FastAPI validated (the bodies are the routes' own).
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or None
        error = InvalidRequest(f"Invalid request: {where}: {first['msg']}", param=where)
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request, exc)


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A 500 for an exception nothing expected: logged with its traceback, answered with
    the request id only."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request_id = getattr(request.state, "request_id", "?")
    error = GatewayError(f"The gateway hit an internal error (request {request_id}).")
    return error_response(request, error)


def _request_id_header(request: Request) -> dict[str, str]:
    request_id = getattr(request.state, "request_id", None)
    return {"x-raygate-request-id": request_id} if request_id else {}
