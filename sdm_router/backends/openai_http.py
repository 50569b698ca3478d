"""``OpenAIHTTPBackend``: any OpenAI-compatible ``/v1`` server (vLLM, llama.cpp server, ...).

The client is aiohttp: one pooled session per upstream. ``python -m benchmarks.outbound_client``
measured httpx (what served before) at 5 to 11 times aiohttp's client CPU per call, the gap
widest at concurrency 16 (``loadtests/results/outbound_client.txt``). Retries and the circuit
breaker are ``backends/resilience.py``; failures are translated to ``core.errors`` here, by
exception type.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from sdm_router.backends.openai_wire import (
    UPSTREAM_CAPABILITIES,
    chat_payload,
    embeddings_payload,
    parse_chunk,
    parse_completion,
    parse_embeddings,
)
from sdm_router.backends.resilience import (
    CircuitBreaker,
    NullResilienceObserver,
    ResilienceObserver,
    RetryableError,
    RetryPolicy,
    parse_retry_after,
)
from sdm_router.config import OpenAIBackendSettings
from sdm_router.core.embeddings import EmbeddingRequest, Embeddings
from sdm_router.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    NoHealthyBackend,
    UpstreamError,
    UpstreamTimeout,
)
from sdm_router.core.generation import Generation, GenerationRequest, Param, StreamDelta
from sdm_router.observability.metrics import RetryReason

T = TypeVar("T")

_JSON_HEADERS = {"Content-Type": "application/json"}
# expire idle connections before the upstream's keep-alive timeout (uvicorn: 5 s) closes them
_KEEPALIVE_SECONDS = 4.0
# an SSE line longer than this is not an OpenAI stream (guards the line buffer)
_MAX_LINE_BYTES = 8 * 1024 * 1024
# after [DONE], how long the end of the body may take before the connection is dropped
_DRAIN_SECONDS = 1.0


def _translate(error: BaseException, backend: str) -> GatewayError:
    """Map an aiohttp (or timeout) exception to our error tree by type, never by message."""
    if type(error) is TimeoutError:  # the call's total timeout (aiohttp raises it bare)
        return UpstreamTimeout(f"backend {backend!r} exceeded its total timeout")
    if isinstance(error, TimeoutError):  # aiohttp's connect / socket-read timeouts
        return UpstreamTimeout(f"backend {backend!r} timed out ({type(error).__name__})")
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamError(f"backend {backend!r} is unreachable", code="upstream_connection")
    if isinstance(
        error,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | aiohttp.ClientResponseError,
    ):
        return UpstreamError(
            f"backend {backend!r} broke the connection mid-response", code="upstream_protocol"
        )
    return UpstreamError(f"backend {backend!r} failed ({type(error).__name__})")


def _env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts
    it, read once at start (httpx read the environment too; aiohttp would on every request)."""
    split = urllib.parse.urlsplit(url)
    if split.hostname is None or urllib.request.proxy_bypass(split.hostname):
        return None
    return urllib.request.getproxies().get(split.scheme)


def _status_error(status: int, body: bytes, backend: str) -> GatewayError:
    """An upstream HTTP error status as a gateway error, keeping the upstream's message."""
    message = body[:500].decode("utf-8", "replace")
    code = None
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            message = str(parsed["error"].get("message", message))
            code = parsed["error"].get("code")
    except orjson.JSONDecodeError:
        pass
    text = f"backend {backend!r} answered {status}: {message}"
    if status in (400, 422):
        # vLLM writes its status as the code (an integer) and says "maximum context length"
        if code == "context_length_exceeded" or "maximum context length" in message:
            return ContextLengthExceeded(text)
        return InvalidRequest(text, code=code if isinstance(code, str) and code else None)
    if status == 503:
        return NoHealthyBackend(text)
    if status == 429:
        return UpstreamError(text, code="upstream_rate_limited")
    kind = "upstream_server_error" if status >= 500 else "upstream_client_error"
    return UpstreamError(text, code=kind)


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The request body as JSON: orjson, or the standard library for what orjson refuses
    (integers beyond 64 bits, which JSON allows and a client may send inside tool schemas)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


class OpenAIHTTPBackend:
    """One pooled ``aiohttp.ClientSession`` per upstream: keep-alive connections up to
    ``max_connections``, connect/read/total timeouts, retries before the first byte, a circuit
    breaker. Cancelling the awaiting task (or closing a stream early) closes the upstream
    request: its connection is dropped, never returned to the pool half-read."""

    def __init__(
        self,
        name: str,
        settings: OpenAIBackendSettings,
        *,
        observer: ResilienceObserver | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._name = name
        self._settings = settings
        self._resolver = resolver  # name resolution override (tests, service discovery)
        observer = observer or NullResilienceObserver()
        self._retries = RetryPolicy(name, settings.retries, observer)
        self._breaker = CircuitBreaker(name, settings.circuit_breaker, observer)
        self._session: aiohttp.ClientSession | None = None
        self._chat_url = f"{settings.base_url}/chat/completions"
        self._embeddings_url = f"{settings.base_url}/embeddings"

    @property
    def name(self) -> str:
        """The direct-model id of this backend."""
        return self._name

    @property
    def device(self) -> str:
        """Upstream servers run elsewhere."""
        return "remote"

    @property
    def capabilities(self) -> frozenset[Param]:
        """Every optional parameter is passed upstream (``openai_wire.chat_payload``)."""
        return UPSTREAM_CAPABILITIES

    @property
    def breaker(self) -> CircuitBreaker:
        """This backend's circuit breaker (its state is also a metric)."""
        return self._breaker

    async def start(self) -> None:
        """Open the connection pool."""
        timeouts = self._settings.timeouts
        headers = {}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections,
            limit_per_host=0,
            keepalive_timeout=_KEEPALIVE_SECONDS,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            # connect: a new connection, or a free one from the full pool; sock_read: between
            # two reads; the call's total is given per attempt (what is left of it)
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeouts.connect, sock_read=timeouts.read
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            proxy=_env_proxy(self._settings.base_url),
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise NoHealthyBackend(f"backend {self._name!r} is not started")
        return self._session

    async def generate(self, request: GenerationRequest) -> Generation:
        """One non-streamed chat completion upstream, bounded by the total timeout."""
        payload = chat_payload(
            request, self._settings.model, self._settings.top_logprobs, stream=False
        )
        candidates, usage = await self._call_json(
            self._chat_url, payload, parse_completion, request.deadline
        )
        return Generation(model=self._name, candidates=candidates, usage=usage)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """One ``/embeddings`` call upstream (``/v1/embeddings``), bounded by the total timeout."""
        payload = embeddings_payload(request)
        return await self._call_json(
            self._embeddings_url, payload, parse_embeddings, request.deadline
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Stream one candidate; a stream that ends without ``[DONE]`` is an upstream error.
        Retried only until the upstream's 2xx headers: never after the first byte."""
        session = self._require_session()
        payload = chat_payload(
            request, self._settings.model, self._settings.top_logprobs, stream=True
        )
        body = encode_payload(payload)
        probe = self._breaker.admit()
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self._open_with_retries(
                session, self._chat_url, body, request.deadline
            )
            async with aclosing(self._events(response)) as events:
                async for delta in events:
                    yield delta
        except GatewayError as error:
            self._breaker.record(probe, error)
            if response is not None:
                response.close()
            raise
        except BaseException:  # cancelled, or the consumer closed the stream early
            self._breaker.abandoned(probe)
            if response is not None:
                response.close()  # the upstream sees the disconnect and stops generating
            raise
        self._breaker.succeeded(probe)
        response.release()  # back to the pool (read to the end)

    # ------------------------------------------------------------------ one call

    async def _call_json(
        self,
        url: str,
        payload: dict[str, Any],
        parse: Callable[[Any], T],
        deadline: float | None,
    ) -> T:
        """POST ``payload``, read the whole reply and ``parse`` it, under the breaker, by
        ``deadline`` (the request's, ``time.monotonic()``)."""
        session = self._require_session()
        body = encode_payload(payload)
        probe = self._breaker.admit()
        try:
            response = await self._open_with_retries(session, url, body, deadline)
            try:
                content = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise _translate(error, self._name) from error
            finally:
                response.release()
            try:
                reply = orjson.loads(content)
            except orjson.JSONDecodeError as error:
                raise UpstreamError(
                    f"backend {self._name!r} sent a body that is not JSON", code="bad_response"
                ) from error
            result = parse(reply)
        except GatewayError as error:
            self._breaker.record(probe, error)
            raise
        except BaseException:
            self._breaker.abandoned(probe)
            raise
        self._breaker.succeeded(probe)
        return result

    async def _open_with_retries(
        self, session: aiohttp.ClientSession, url: str, body: bytes, deadline: float | None
    ) -> aiohttp.ClientResponse:
        """A 2xx response with its body unread; retried as ``retries`` says, within the call's
        total timeout and the request's ``deadline``."""
        ends = time.monotonic() + self._settings.timeouts.total
        until = ends if deadline is None else min(ends, deadline)
        return await self._retries.call(
            lambda: self._open(session, url, body, ends),
            until=until,
            may_retry=lambda: not self._breaker.is_open,
        )

    async def _open(
        self, session: aiohttp.ClientSession, url: str, body: bytes, ends: float
    ) -> aiohttp.ClientResponse:
        """One attempt, up to the response's headers (an error status's body is read)."""
        timeouts = self._settings.timeouts
        left = ends - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout(f"backend {self._name!r} exceeded its total timeout")
        timeout = aiohttp.ClientTimeout(
            total=left, connect=timeouts.connect, sock_read=timeouts.read
        )
        try:
            response = await session.post(
                url, data=body, headers=_JSON_HEADERS, timeout=timeout, allow_redirects=False
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise RetryableError(_translate(error, self._name), "connection") from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            # closed or reset before any response byte (a stale pooled connection, a crash)
            closed = UpstreamError(
                f"backend {self._name!r} closed the connection before answering",
                code="upstream_connection",
            )
            raise RetryableError(closed, "connection") from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _translate(error, self._name) from error
        status = response.status
        if status < 400:
            return response
        try:
            content = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _translate(error, self._name) from error
        finally:
            response.release()
        failure = _status_error(status, content, self._name)
        if status in self._settings.retries.retry_statuses:
            reason: RetryReason = "rate_limited" if status == 429 else "server_error"
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableError(failure, reason, retry_after)
        raise failure

    # ------------------------------------------------------------------ server-sent events

    async def _events(self, response: aiohttp.ClientResponse) -> AsyncGenerator[StreamDelta, None]:
        """The deltas of an SSE body, until ``data: [DONE]``."""
        content = response.content
        tail = b""
        try:
            async for chunk in content.iter_any():
                lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
                tail = lines.pop()
                if len(tail) > _MAX_LINE_BYTES:
                    raise UpstreamError(
                        f"backend {self._name!r} sent a stream line over {_MAX_LINE_BYTES} bytes",
                        code="bad_response",
                    )
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        await self._drain(response)
                        return
                    for delta in self._parse_event(data):
                        yield delta
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _translate(error, self._name) from error
        if tail.startswith(b"data:"):  # a last line without its newline
            data = tail[5:].strip()
            if data == b"[DONE]":
                return
            for delta in self._parse_event(data):
                yield delta
        raise UpstreamError(
            f"backend {self._name!r} ended the stream before [DONE]", code="upstream_protocol"
        )

    def _parse_event(self, data: bytes) -> list[StreamDelta]:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise UpstreamError(
                f"backend {self._name!r} sent a malformed stream event", code="bad_response"
            ) from error
        return parse_chunk(body)

    @staticmethod
    async def _drain(response: aiohttp.ClientResponse) -> None:
        """Read the body's end after ``[DONE]`` so that the connection goes back to the pool;
        an upstream that keeps it open loses the connection instead."""
        content = response.content
        if content.at_eof():
            return
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                while not content.at_eof():
                    await content.readany()
        except (aiohttp.ClientError, TimeoutError):
            response.close()
