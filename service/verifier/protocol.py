"""The Verifier protocol the pipeline depends on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from service.core.verdict import Verdict, VerificationInput, VerifierInfo


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

    async def verify(
        self, items: Sequence[VerificationInput], *, nearest_exemplars: int = 0
    ) -> list[Verdict]:
        """One verdict per item, in order."""
        ...
