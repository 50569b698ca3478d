"""The request-log middleware at the ASGI level: one line and one response count per request,
whatever the app did (answered, failed, was left by its client, cut a stream short)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import Message, Receive, Scope, Send

from sdm_router.api.edge.middleware import RequestLogMiddleware, route_template
from sdm_router.api.serve.server import GatewayServer
from sdm_router.observability.logging import count_in_request
from sdm_router.observability.metrics import GatewayMetrics

LOGGER = "sdm_router.api.edge.middleware"


def scope(path: str = "/v1/chat/completions", **state: Any) -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": [], "state": state}


METRICS: list[GatewayMetrics] = []  # the last run's metrics


async def run(app: Any, request: Scope, messages: list[Message] | None = None) -> list[Message]:
    """Call ``app`` through the middleware (fresh metrics, kept in METRICS); returns what it
    sent."""
    incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    metrics = GatewayMetrics(CollectorRegistry())
    middleware = RequestLogMiddleware(app, metrics)
    METRICS[:] = [metrics]
    await middleware(request, receive, send)
    return sent


def the_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    return record


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's attributes: the line's fields are among them (``extra=`` adds them)."""
    return vars(record)


def responses(status: str, route: str = "other") -> float | None:  # no app: no template
    return METRICS[0].registry.get_sample_value(
        "sdm_router_http_responses_total", {"route": route, "status": status}
    )


async def answer(scope: Scope, receive: Receive, send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def test_the_line_carries_status_key_name_and_what_the_app_added(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["log_fields"].update({"route": "auto", "decision": "accept"})
        count_in_request("retries")
        count_in_request("retries")
        await answer(scope, receive, send)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        await run(app, scope(api_key_name="team-a", request_id="req-1"))
    line = fields(the_line(caplog))
    assert line["status"] == 200
    assert line["key_name"] == "team-a"
    assert line["request_id"] == "req-1"
    assert (line["route"], line["decision"], line["retries"]) == ("auto", "accept", 2)
    assert line["duration_ms"] >= line["first_byte_ms"] >= 0
    assert responses("200") == 1


async def test_an_app_that_fails_is_one_500_in_the_envelope_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        sent = await run(app, scope(request_id="req-1"))  # not raised on: no second log
    assert sent[0]["status"] == 500
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "internal_error" and "req-1" in error["message"]
    assert "boom" not in error["message"]
    traceback, line = [r for r in caplog.records if r.name == LOGGER]
    assert traceback.exc_info is not None and getattr(traceback, "request_id", None) == "req-1"
    assert fields(line)["status"] == 500 and line.levelno == logging.WARNING
    assert line.exc_info is None
    assert responses("500") == 1


async def test_an_app_that_fails_mid_response_is_left_to_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Too late for a 500: the server closes the connection (and logs the error, once)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(RuntimeError):
        await run(app, scope())
    line = fields(the_line(caplog))
    assert line["status"] == 200 and line["aborted"] is True


async def test_a_client_that_left_before_the_answer_is_a_499(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with caplog.at_level(logging.INFO, logger=LOGGER):
        await run(app, scope(), [{"type": "http.request", "body": b""},
                                 {"type": "http.disconnect"}])  # fmt: skip
    line = fields(the_line(caplog))
    assert line["status"] == 499 and line["client_disconnected"] is True
    assert responses("499") == 1


async def test_a_stream_cut_short_is_aborted(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        raise asyncio.CancelledError  # e.g. cancelled at the end of a graceful shutdown

    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(asyncio.CancelledError):
        await run(app, scope())
    line = fields(the_line(caplog))
    assert line["status"] == 200 and line["aborted"] is True
    assert line["cancelled"] is True


async def test_each_request_has_its_own_fields(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/first":
            scope["state"]["log_fields"]["decision"] = "abstain"
        await answer(scope, receive, send)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        await run(app, scope("/first"))
        await run(app, scope("/second"))
    first, second = [r for r in caplog.records if r.name == LOGGER]
    assert fields(first)["decision"] == "abstain"
    assert not hasattr(second, "decision")


def test_route_template_prefers_the_matched_route_then_the_patterns() -> None:
    class Route:
        path = "/v1/decisions/{identifier}"

    assert route_template({"route": Route(), "path": "/v1/decisions/abc"}) == Route.path
    assert route_template({"path": "/nowhere"}) == "other"


def test_http_response_metric_refuses_a_status_that_is_not_one() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.http_response("/v1/verify", 429, 0.01)
    labels = {"route": "/v1/verify", "status_class": "4xx"}
    count = metrics.registry.get_sample_value(
        "sdm_router_http_request_duration_seconds_count", labels
    )
    assert count == 1
    with pytest.raises(ValueError, match="status"):
        metrics.http_response("/v1/verify", 1000, 0.01)
    with pytest.raises(ValueError, match="route"):
        metrics.http_response("", 200, 0.01)


async def test_sigterm_drains_then_exits_after_the_delay() -> None:
    """The drain's steps without sockets: SIGTERM flips readiness at once and keeps serving;
    the server exits once the delay is over; a second signal exits at once."""
    drained: list[bool] = []
    server = GatewayServer(
        uvicorn.Config(answer), drain_delay=0.3, on_drain=lambda: drained.append(True)
    )
    server.handle_exit(signal.SIGTERM, None)
    assert drained == [True] and server.draining and not server.should_exit
    assert await server.on_tick(1) is False  # still serving during the delay
    await asyncio.sleep(0.35)
    assert await server.on_tick(2) is True
    assert drained == [True]

    again = GatewayServer(uvicorn.Config(answer), drain_delay=60, on_drain=lambda: None)
    again.handle_exit(signal.SIGTERM, None)
    again.handle_exit(signal.SIGTERM, None)  # a second SIGTERM: uvicorn's immediate shutdown
    assert again.should_exit

    interrupted = GatewayServer(uvicorn.Config(answer), drain_delay=60, on_drain=lambda: None)
    interrupted.handle_exit(signal.SIGINT, None)  # Ctrl+C skips the drain
    assert interrupted.should_exit and not interrupted.draining


def test_idle_connections_outlive_a_load_balancers_idle_timeout() -> None:
    """A gateway that closes an idle keep-alive connection first races the balancer reusing it
    (the client sees a reset); uvicorn's own default is 5 s."""
    from types import SimpleNamespace

    from fastapi import FastAPI

    from sdm_router.api.serve.server import gateway_server
    from sdm_router.config import ServerSettings

    app = FastAPI()
    app.state.context = SimpleNamespace(
        gateway=SimpleNamespace(begin_draining=lambda: None),
        metrics=SimpleNamespace(connection_closed=lambda reason: None),
    )
    server = gateway_server(app, "127.0.0.1", 8000, ServerSettings(keep_alive_seconds=90))
    assert server.config.timeout_keep_alive == 90
    assert ServerSettings().keep_alive_seconds > 60
