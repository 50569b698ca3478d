"""The Verifier protocol the pipeline depends on."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from sdm_router.core.verdict import Verdict, VerificationInput, VerifierInfo


@runtime_checkable
class Verifier(Protocol):
    """Scores answers with calibrated verdicts. Heavy work never runs on the event loop."""

    @property
    def info(self) -> VerifierInfo:
        """Artifact identity and device."""
        ...

    async def start(self) -> None:
        """Load the artifact and models. Refuses corrupt or mismatched artifacts."""
        ...

    async def close(self) -> None:
        """Stop workers and free the device."""
        ...

    def pinned(self) -> AbstractContextManager[str]:
        """Hold the artifact serving now for a whole request; yields its id. A reload meanwhile
        does not change what this request's ``verify`` calls use."""
        ...

    async def reload(self, artifact: Path | None = None) -> VerifierInfo:
        """Load ``artifact`` (default: the configured one) off the event loop, check it, and
        swap it in atomically; raises ``ReloadRefused`` and keeps the old one otherwise."""
        ...

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        """One verdict per item, in order, by the pinned ``artifact`` (default: the current)."""
        ...

    @property
    def shadow_id(self) -> str | None:
        """The shadow (candidate) artifact scoring beside the live one, if any."""
        ...

    async def shadow(self, verdict: Verdict) -> Verdict | None:
        """The shadow artifact's verdict on what ``verdict`` judged, scored off the response
        path; None without a shadow or when it skipped that row."""
        ...


class ReloadRefused(Exception):
    """A new verifier artifact was refused (corrupt, mismatched, wrong encoder): why."""
