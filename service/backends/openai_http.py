"""``OpenAIHTTPBackend``: any OpenAI-compatible ``/v1`` server (vLLM, llama.cpp server, ...)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from service.backends.openai_wire import chat_payload, parse_chunk, parse_completion
from service.config import OpenAIBackendSettings
from service.core.errors import (
    GatewayError,
    InvalidRequest,
    NoHealthyBackend,
    UpstreamError,
    UpstreamTimeout,
)
from service.core.generation import Generation, GenerationRequest, StreamDelta


def _translate(error: httpx.HTTPError, backend: str) -> GatewayError:
    """Map an httpx exception to our error tree by type, never by message text."""
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(f"backend {backend!r} timed out ({type(error).__name__})")
    if isinstance(error, httpx.ConnectError):
        return UpstreamError(f"backend {backend!r} is unreachable", code="upstream_connection")
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
        return UpstreamError(
            f"backend {backend!r} broke the connection mid-response", code="upstream_protocol"
        )
    return UpstreamError(f"backend {backend!r} failed ({type(error).__name__})")


def _status_error(status: int, body: bytes, backend: str) -> GatewayError:
    """An upstream HTTP error status as a gateway error, keeping the upstream's message."""
    message = body[:500].decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            message = str(parsed["error"].get("message", message))
    except ValueError:
        pass
    text = f"backend {backend!r} answered {status}: {message}"
    if status in (400, 422):
        return InvalidRequest(text)
    if status == 503:
        return NoHealthyBackend(text)
    if status == 429:
        return UpstreamError(text, code="upstream_rate_limited")
    kind = "upstream_server_error" if status >= 500 else "upstream_client_error"
    return UpstreamError(text, code=kind)


class OpenAIHTTPBackend:
    """One pooled ``httpx.AsyncClient`` per upstream, with connect/read/total timeouts."""

    def __init__(
        self,
        name: str,
        settings: OpenAIBackendSettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        """The direct-model id of this backend."""
        return self._name

    @property
    def device(self) -> str:
        """Upstream servers run elsewhere."""
        return "remote"

    async def start(self) -> None:
        """Open the connection pool."""
        timeouts = self._settings.timeouts
        headers = {}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        limit = self._settings.max_connections
        self._client = httpx.AsyncClient(
            base_url=self._settings.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=timeouts.connect),
            # expire idle connections before the upstream's 5 s keep-alive timeout closes them
            limits=httpx.Limits(
                max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=4.0
            ),
            transport=self._transport,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise NoHealthyBackend(f"backend {self._name!r} is not started")
        return self._client

    async def generate(self, request: GenerationRequest) -> Generation:
        """One non-streamed chat completion upstream, bounded by the total timeout."""
        client = self._require_client()
        payload = chat_payload(
            request, self._settings.model, self._settings.top_logprobs, stream=False
        )
        try:
            async with asyncio.timeout(self._settings.timeouts.total):
                response = await client.post("/chat/completions", json=payload)
        except TimeoutError as error:
            raise UpstreamTimeout(f"backend {self._name!r} exceeded its total timeout") from error
        except httpx.HTTPError as error:
            raise _translate(error, self._name) from error
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.content, self._name)
        try:
            body: Any = response.json()
        except ValueError as error:
            raise UpstreamError(
                f"backend {self._name!r} sent a body that is not JSON", code="bad_response"
            ) from error
        candidates, usage = parse_completion(body)
        return Generation(model=self._name, candidates=candidates, usage=usage)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Stream one candidate; a stream that ends without ``[DONE]`` is an upstream error."""
        client = self._require_client()
        payload = chat_payload(
            request, self._settings.model, self._settings.top_logprobs, stream=True
        )
        try:
            async with asyncio.timeout(self._settings.timeouts.total):
                async with client.stream("POST", "/chat/completions", json=payload) as response:
                    if response.status_code >= 400:
                        raise _status_error(
                            response.status_code, await response.aread(), self._name
                        )
                    async for delta in self._read_events(response):
                        yield delta
        except TimeoutError as error:
            raise UpstreamTimeout(f"backend {self._name!r} exceeded its total timeout") from error
        except httpx.HTTPError as error:
            raise _translate(error, self._name) from error

    async def _read_events(self, response: httpx.Response) -> AsyncIterator[StreamDelta]:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                body = json.loads(data)
            except ValueError as error:
                raise UpstreamError(
                    f"backend {self._name!r} sent a malformed stream event", code="bad_response"
                ) from error
            for delta in parse_chunk(body):
                yield delta
        raise UpstreamError(
            f"backend {self._name!r} ended the stream before [DONE]", code="upstream_protocol"
        )
