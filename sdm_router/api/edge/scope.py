"""Opening a request at the edge: authorize the key, admit it under its limits, fix its deadline,
and build the one ``RequestScope`` serving receives. Every endpoint that serves (generation,
verify, embeddings) opens its requests here, so admission and deadline are the same for all."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from starlette.requests import Request

from sdm_router.api.edge.admission import Admission
from sdm_router.api.edge.auth import Principal, authorize, authorize_name, principal_of
from sdm_router.api.edge.key_limits import KeyLimiter
from sdm_router.pipeline.embeddings import EmbeddingsServing
from sdm_router.pipeline.gateway import Gateway
from sdm_router.pipeline.plan import RoutePlan
from sdm_router.pipeline.scope import RequestScope


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admitted request: the scope serving receives, and the admission the handler gives
    back (``admission.release``) when the response has ended."""

    scope: RequestScope
    admission: Admission


class RequestEdge:
    """Opens request scopes for the routes (``server.request_timeout_seconds`` each)."""

    def __init__(
        self,
        gateway: Gateway,
        limiter: KeyLimiter,
        request_timeout: float,
        embeddings: EmbeddingsServing,
    ) -> None:
        self._gateway = gateway
        self._embeddings = embeddings
        self.limiter = limiter
        self.request_timeout = request_timeout

    async def open_route(
        self, request: Request, model: str | None, *, response_id: str | None = None
    ) -> Admitted:
        """The route or direct model ``model`` names (404), allowed for the key (403),
        admitted under its limits (429)."""
        principal = principal_of(request)
        plan = self._gateway.plan_for(model, None if principal is None else principal.may_use)
        if principal is not None:
            authorize(principal, plan)
        return await self._admit(request, principal, plan, model, response_id)

    async def open_embedding(self, request: Request, model: str) -> Admitted:
        """The embedding model ``model``, allowed for the key (403), served (404), admitted
        (429)."""
        principal = principal_of(request)
        authorize_name(principal, model, model=True)
        offered = None if principal is None else partial(principal.allows, model=True)
        self._embeddings.check(model, offered)
        return await self._admit(request, principal, None, model, None)

    async def _admit(
        self,
        request: Request,
        principal: Principal | None,
        plan: RoutePlan | None,
        model: str | None,
        response_id: str | None,
    ) -> Admitted:
        admission = await self.limiter.admit(principal)
        state = request.scope.get("state", {})
        scope = RequestScope(
            request_id=state.get("request_id", "unknown"),
            plan=plan,
            deadline=time.monotonic() + self.request_timeout,
            requested_model=model,
            key_name=principal.name if principal is not None else None,
            client_request_id=state.get("client_request_id"),
            response_id=response_id,
            usage_sink=admission.count_backend_usage if admission.counts_tokens else None,
            log_fields=state.setdefault("log_fields", {}),
        )
        return Admitted(scope, admission)
