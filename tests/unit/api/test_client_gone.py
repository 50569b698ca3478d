"""A client that hangs up before the answer is a 499 on every route, never a logged 500."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from sdm_router.api.errors import ClientDisconnected, install_error_handlers


async def test_client_disconnected_is_a_499_not_an_unhandled_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/verify")
    async def verify() -> None:
        raise ClientDisconnected

    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            reply = await client.post("/v1/verify")
    assert reply.status_code == 499
    assert not [r for r in caplog.records if "unhandled" in r.getMessage()]
