"""The gateway's one exception hierarchy.

Every error that can reach a client is a `GatewayError`: it knows its HTTP status and the
OpenAI error `type` / `code`, and renders itself in OpenAI's error shape. One handler in the
API turns them into responses; nothing else formats errors.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """An error with an HTTP status and an OpenAI-shaped body."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross Ray process boundaries; keep the keyword-only fields on the way.
        return (self.__class__, (self.message,), self.__dict__)

    def to_body(self) -> dict[str, Any]:
        """The error in OpenAI's wire shape."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    """The request is malformed or asks for something the gateway cannot do."""

    status = 400
    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    """A parameter the chosen provider does not support."""

    default_code = "unsupported_parameter"


class AuthError(GatewayError):
    """Missing or wrong credentials."""

    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """The caller is known but not allowed to do this."""

    status = 403
    type = "invalid_request_error"
    default_code = "permission_denied"


class PolicyViolation(PermissionDenied):
    """The request breaks a policy rule (named in the message); nothing was sent upstream."""

    default_code = "policy_violation"


class ContentFiltered(PolicyViolation):
    """The upstream's own content filter refused the prompt (Azure OpenAI's `content_filter`
    error); the message names the categories that tripped it. An alias with `content_filter`
    in `fallback_on` tries its next target instead."""

    default_code = "content_filter"


class ModelNotFound(GatewayError):
    """The model alias is not configured (or not enabled)."""

    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"


class NotFound(GatewayError):
    """An unknown route or resource."""

    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class RequestTimeout(GatewayError):
    """The client did not send its request (its body) in time."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(GatewayError):
    """The request body is over the configured limit."""

    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class ServiceUnavailable(GatewayError):
    """A service the gateway itself depends on (directory, identity provider) is down."""

    status = 503
    type = "api_error"
    default_code = "service_unavailable"


class RateLimited(GatewayError):
    """Too many requests, from the gateway's own limits or relayed from an upstream."""

    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """The upstream failed or answered with something the gateway cannot use."""

    status = 502
    type = "api_error"
    default_code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    """The upstream is reachable but says it is unavailable (503 / overloaded)."""

    status = 503
    default_code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the connect / first-token / total timeout."""

    status = 504
    default_code = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request for a reason another attempt would not fix."""


class ClientClosedRequest(GatewayError):
    """The client went away before the answer was complete (nginx's 499; never sent)."""

    status = 499
    type = "client_closed_request"
    default_code = "client_closed_request"


def is_retryable(error: GatewayError) -> bool:
    """Whether another attempt (same or another target) may succeed where this one failed."""
    return isinstance(error, UpstreamError | RateLimited) and not isinstance(
        error, UpstreamRejected
    )
