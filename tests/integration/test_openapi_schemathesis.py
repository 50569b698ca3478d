"""Property-based requests from the gateway's own OpenAPI schema: no input may cause a 5xx.

Every generated request goes over real HTTP to a gateway whose backends are the fake upstream's
``good`` behaviour, so a 5xx can only come from the gateway itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from sdm_router.config import ServerSettings
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_app
from tests.support.keys import bearer, key_entry
from tests.support.servers import serve_gateway_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


ADMIN_KEY = "sk-schemathesis-admin"


@pytest.fixture(scope="module", params=["open", "keyed"])
def schemathesis_gateway(
    request: pytest.FixtureRequest, upstream: tuple[str, FakeUpstream]
) -> Iterator[tuple[str, dict[str, str]]]:
    """The gateway without keys, and with keys (every case then presents the admin key, which
    opens every endpoint, limits included: a limited user key keeps its own 429s)."""
    url = upstream[0]
    backend = {"type": "openai", "base_url": f"{url}/v1", "model": "good"}
    keyed = request.param == "keyed"
    auth = {
        "keys": [key_entry("user", "sk-schemathesis-user", limits={"rpm": 100000})],
        "admin_keys": [key_entry("ops", ADMIN_KEY)],
    }
    with_auth: dict[str, Any] = {"auth": auth} if keyed else {}
    app = fake_app(
        url,
        backends={"good": backend},
        routes={"auto": {"tiers": [{"backend": "good"}]}},
        retrieval=None,
        **with_auth,
    )
    with serve_gateway_in_thread(app, ServerSettings()) as gateway:  # as `sdm-router serve`
        yield gateway, bearer(ADMIN_KEY) if keyed else {}


def _check_operation(operation: schemathesis.APIOperation, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(timeout=30, headers=headers)
        if headers:  # the admin key opens every endpoint: a 401 means it was not presented
            assert response.status_code != 401, response.text
        case.validate_response(response, checks=[not_a_server_error])
        content_type = response.headers.get("content-type") or [""]
        if response.status_code >= 400 and content_type[0].startswith("application/json"):
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    run()


def test_no_input_causes_a_server_error(
    schemathesis_gateway: tuple[str, dict[str, str]],
) -> None:
    gateway, headers = schemathesis_gateway
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json", headers=headers)
    schema.config.base_url = gateway
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the schema has an operation schemathesis cannot use
        operations.append(result.ok())
    assert len(operations) >= 6
    for operation in operations:
        _check_operation(operation, headers)
    chat = {"model": "auto", "messages": [{"role": "user", "content": "What is 6 x 7?"}]}
    served = httpx.post(f"{gateway}/v1/chat/completions", json=chat, headers=headers, timeout=30)
    assert served.status_code == 200, served.text  # still serving after every generated case


def test_openapi_documents_the_endpoints(
    schemathesis_gateway: tuple[str, dict[str, str]],
) -> None:
    gateway, headers = schemathesis_gateway
    paths = httpx.get(f"{gateway}/openapi.json", headers=headers).json()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/verify", "/readyz"):
        assert path in paths
