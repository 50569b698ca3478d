"""``NoopVerifier``: an instant accept verdict, so a benchmark measures the gateway alone."""

from __future__ import annotations

from collections.abc import Sequence

from service.core.verdict import Verdict, VerificationInput, VerifierInfo

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
    """Implements ``service.verifier.protocol.Verifier``; accepts everything at once."""

    @property
    def info(self) -> VerifierInfo:
        """A fixed identity: no artifact, no device."""
        return VerifierInfo(artifact_id="noop", device="none", description="accepts everything")

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to free."""

    async def verify(
        self, items: Sequence[VerificationInput], *, nearest_exemplars: int = 0
    ) -> list[Verdict]:
        """One accepting verdict per item, without awaiting anything."""
        return [ACCEPT] * len(items)
