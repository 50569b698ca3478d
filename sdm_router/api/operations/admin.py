"""``POST /admin/verifier/reload``: swap in another verifier artifact without a restart.

An admin key may name an artifact only inside the configured roots (``verifier.artifact_roots``,
by default the folder of ``verifier.artifact``). A path outside them, or one whose symlinks lead
outside, is refused with the same words whether it exists or not, so the endpoint tells nothing
about the rest of the filesystem. Every refusal is a 400 ``artifact_refused`` naming the reason
(never a file's contents), and the old artifact keeps serving.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from sdm_router.api.context import context_of
from sdm_router.core.errors import InvalidRequest
from sdm_router.verifier.protocol import ReloadRefused

router = APIRouter()
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux


class ReloadRequest(BaseModel):
    """An artifact path; without one the configured ``verifier.artifact`` is loaded again."""

    model_config = ConfigDict(extra="forbid", strict=True)
    artifact: StrictStr | None = Field(None, min_length=1)


def refused(reason: str) -> InvalidRequest:
    """The 400 of a refused artifact."""
    return InvalidRequest(
        f"The verifier artifact was refused, the old one keeps serving: {reason}",
        param="artifact",
        code="artifact_refused",
    )


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def confined(requested: str, roots: Sequence[Path]) -> Path:
    """``requested`` resolved (symlinks followed), if both its spelling and its resolved path
    lie inside one of ``roots``; else the refusal every such path gets alike."""
    outside = refused(
        "the path must be absolute and lie inside verifier.artifact_roots "
        f"({', '.join(str(root) for root in roots) or 'none configured'})"
    )
    if len(requested) > MAX_PATH_CHARS:
        raise refused(f"the path is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in requested or not os.path.isabs(requested):
        raise outside
    spelled = Path(os.path.normpath(requested))
    resolved = spelled.resolve()  # not strict: a missing path resolves as far as it exists
    for root in roots:
        if _within(spelled, Path(os.path.abspath(root))) and _within(resolved, root.resolve()):
            return resolved
    raise outside


async def reload_verifier(request: Request, artifact: str | None) -> dict[str, Any]:
    """Reload, publish the new artifact id, and say what is serving now."""
    context = context_of(request)
    path = None if artifact is None else confined(artifact, context.artifact_roots)
    try:
        info = await context.gateway.reload_verifier(path)
    except ReloadRefused as error:
        raise refused(str(error)) from error
    context.metrics.set_verifier_info(info.artifact_id, info.device)
    return {"object": "verifier", "artifact_id": info.artifact_id, "device": info.device}


@router.post("/admin/verifier/reload")
async def reload(request: Request, body: ReloadRequest | None = None) -> dict[str, Any]:
    """Load and check the artifact off the event loop, then swap it in atomically; requests in
    flight finish on the artifact they started with."""
    return await reload_verifier(request, body.artifact if body else None)
