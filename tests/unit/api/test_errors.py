"""Error mapping: statuses by type, validation problems naming the field."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from sdm_router.api.errors import status_of, validation_error
from sdm_router.core import errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequest("x"), 400),
        (errors.Unauthorized("x"), 401),
        (errors.ModelNotFound("x"), 404),
        (errors.Abstained("x"), 422),
        (errors.Overloaded("x"), 429),
        (errors.UpstreamError("x"), 502),
        (errors.NoHealthyBackend("x"), 503),
        (errors.UpstreamTimeout("x"), 504),
        (errors.GatewayError("x"), 500),
    ],
)
def test_status_by_type(error: errors.GatewayError, status: int) -> None:
    assert status_of(error) == status


def test_validation_error_names_the_nested_field() -> None:
    problem = {
        "type": "literal_error",
        "loc": ("body", "messages", 2, "role"),
        "msg": "Input should be 'user'",
    }
    error = validation_error(RequestValidationError([problem]))
    assert error.param == "messages[2].role"
    assert "messages[2].role" in error.message


def test_missing_field_and_invalid_json() -> None:
    missing = validation_error(
        RequestValidationError(
            [{"type": "missing", "loc": ("body", "messages"), "msg": "Field required"}]
        )
    )
    assert (missing.param, missing.code) == ("messages", "missing_required_parameter")
    broken = validation_error(
        RequestValidationError([{"type": "json_invalid", "loc": ("body", 3), "msg": "JSON"}])
    )
    assert broken.code == "invalid_json"


def test_backend_failure_types_form_a_closed_set() -> None:
    assert errors.failure_type(errors.UpstreamTimeout("x")) == "timeout"
    assert (
        errors.failure_type(errors.UpstreamError("x", code="upstream_connection")) == "connection"
    )
    assert errors.failure_type(errors.InvalidRequest("x")) == "client_error"
    assert errors.failure_type(errors.UpstreamError("x", code="something-new")) == "other"
