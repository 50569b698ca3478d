"""Property-based requests from the gateway's own OpenAPI schema: no input may cause a 5xx.

Every generated request goes over real HTTP to a gateway whose backends are the fake upstream's
``good`` behaviour, so a 5xx can only come from the gateway itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.servers import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def schemathesis_gateway(upstream: tuple[str, FakeUpstream]) -> Iterator[str]:
    url = upstream[0]
    backend = {"type": "openai", "base_url": f"{url}/v1", "model": "good"}
    app = fake_app(
        url,
        backends={"good": backend},
        routes={"auto": {"tiers": [{"backend": "good"}]}},
        retrieval=None,
    )
    with serve_in_thread(app) as gateway:
        yield gateway


def _check_operation(operation: schemathesis.APIOperation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        content_type = response.headers.get("content-type") or [""]
        if response.status_code >= 400 and content_type[0].startswith("application/json"):
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    run()


def test_no_input_causes_a_server_error(schemathesis_gateway: str) -> None:
    schema = schemathesis.openapi.from_url(f"{schemathesis_gateway}/openapi.json")
    schema.config.base_url = schemathesis_gateway
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        _check_operation(operation)


def test_openapi_documents_the_endpoints(schemathesis_gateway: str) -> None:
    paths = httpx.get(f"{schemathesis_gateway}/openapi.json").json()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/verify", "/readyz"):
        assert path in paths
