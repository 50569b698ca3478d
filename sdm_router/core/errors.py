"""The one error tree of the gateway.

Every failure a client can see is a :class:`GatewayError` subclass. Only ``api/`` maps these to
HTTP status codes; the classes carry the OpenAI error ``type`` and ``code`` strings.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: a failure the client is told about in the OpenAI error envelope."""

    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code


class InvalidRequest(GatewayError):
    """The request is malformed or names an out-of-range value (400)."""

    error_type = "invalid_request_error"
    default_code = "invalid_value"


class ContextLengthExceeded(InvalidRequest):
    """The prompt does not fit the model's context window (400)."""

    default_code = "context_length_exceeded"


class Unauthorized(GatewayError):
    """Missing or wrong API key (401)."""

    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """The key is valid but may not use what the request names (403)."""

    error_type = "permission_error"
    default_code = "permission_denied"


class NotFound(GatewayError):
    """What the request names does not exist (404)."""

    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    """The ``model`` names neither a route nor a direct model (404)."""

    default_code = "model_not_found"


class Abstained(GatewayError):
    """The route abstained and its ``on_abstain`` policy is ``error`` (422)."""

    error_type = "abstained"
    default_code = "abstained"


class Overloaded(GatewayError):
    """Too many requests in flight (429)."""

    error_type = "rate_limit_error"
    default_code = "overloaded"


class RateLimited(Overloaded):
    """A key's requests or tokens per minute, or its requests in flight, are used up (429).

    ``retry_after`` is in seconds; ``headers`` are the ``x-ratelimit-*`` headers to send."""

    default_code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        headers: dict[str, str] | None = None,
        error_type: str = "rate_limit_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.error_type = error_type
        self.retry_after = retry_after
        self.headers = headers or {}


class UpstreamError(GatewayError):
    """A backend answered with an error or an unreadable response (502)."""

    error_type = "upstream_error"
    default_code = "upstream_error"


class NoHealthyBackend(GatewayError):
    """The gateway is not ready or no backend can take the request (503)."""

    error_type = "service_unavailable"
    default_code = "no_healthy_backend"


class StoreUnavailable(NoHealthyBackend):
    """The decision store's database cannot be reached right now (503)."""

    default_code = "store_unavailable"


class UpstreamTimeout(GatewayError):
    """A backend did not answer within its timeout (504)."""

    error_type = "timeout"
    default_code = "upstream_timeout"


class ConfigurationError(Exception):
    """The configuration or an artifact it names is unusable; raised at start, never per request."""


_FAILURE_TYPES = {
    "upstream_timeout": "timeout",
    "upstream_connection": "connection",
    "upstream_rate_limited": "rate_limited",
    "upstream_server_error": "server_error",
    "upstream_stream_error": "server_error",
    "no_healthy_backend": "server_error",
    "upstream_client_error": "client_error",
    "upstream_protocol": "invalid_response",
    "bad_response": "invalid_response",
}


def failure_type(error: GatewayError) -> str:
    """The closed-set ``error_type`` metric label of a backend failure."""
    if isinstance(error, InvalidRequest):
        return "client_error"
    return _FAILURE_TYPES.get(error.code or "", "other")
