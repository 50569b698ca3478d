"""``NoopVerifier``: an instant accept verdict, so a benchmark measures the gateway alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sdm_router.core.verdict import Verdict, VerificationInput, VerifierInfo

# Predicted correct, centroid and lower alpha above any allowed accept_alpha (< 1).
ACCEPT = Verdict(
    prediction=1,
    probability=0.999,
    region_alpha=0.999,
    region_alpha_lower=0.999,
    q=100,
    d=1.0,
    q_prime=100.0,
    is_ood=False,
)


class NoopVerifier:
    """Implements ``sdm_router.verifier.protocol.Verifier``; accepts everything at once."""

    @property
    def info(self) -> VerifierInfo:
        """A fixed identity: no artifact, no device."""
        return VerifierInfo(artifact_id="noop", device="none", description="accepts everything")

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to free."""

    @contextmanager
    def pinned(self) -> Iterator[str]:
        """The one artifact there is."""
        yield "noop"

    async def reload(self, artifact: Path | None = None) -> VerifierInfo:
        """Nothing to reload."""
        return self.info

    async def verify(
        self,
        items: Sequence[VerificationInput],
        *,
        nearest_exemplars: int = 0,
        artifact: str | None = None,
    ) -> list[Verdict]:
        """One accepting verdict per item, without awaiting anything."""
        return [ACCEPT] * len(items)

    @property
    def shadow_id(self) -> str | None:
        """No shadow artifact."""
        return None

    async def shadow(self, verdict: Verdict) -> Verdict | None:
        """No shadow verdict."""
        return None
