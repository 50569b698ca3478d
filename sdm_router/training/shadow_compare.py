"""``verifier compare``: the live artifact against the shadow candidate, on the same requests.

For every request the store holds both a live decision and a shadow decision for, both judged
the same served answer. Agreement is the share of those requests where the two decisions are
equal; coverage is each side's share of accepts; accepted precision is, among the accepted
requests that carry a label (``/v1/feedback`` or an import, choice 0), the share labelled
correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select

from sdm_router.config import StorageSettings
from sdm_router.storage.database import make_engine
from sdm_router.storage.tables import decisions, feedback, shadow_decisions


@dataclass(frozen=True, slots=True)
class SideFigures:
    """One artifact's decisions over the compared requests."""

    accepted: int
    coverage: float
    labelled_accepted: int
    correct_accepted: int

    @property
    def precision(self) -> float | None:
        """Accepted precision on the labelled accepted requests (None: none labelled)."""
        if not self.labelled_accepted:
            return None
        return self.correct_accepted / self.labelled_accepted


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """Live vs one candidate artifact over the requests both decided."""

    candidate: str
    live_artifacts: tuple[str, ...]
    requests: int
    labelled: int
    agreement: float
    live: SideFigures
    shadow: SideFigures

    def to_json(self) -> dict[str, Any]:
        """For ``--json``."""

        def side(figures: SideFigures) -> dict[str, Any]:
            return {
                "accepted": figures.accepted,
                "coverage": figures.coverage,
                "labelledAccepted": figures.labelled_accepted,
                "acceptedPrecision": figures.precision,
            }

        return {
            "candidate": self.candidate,
            "liveArtifacts": list(self.live_artifacts),
            "requests": self.requests,
            "labelled": self.labelled,
            "agreement": self.agreement,
            "live": side(self.live),
            "shadow": side(self.shadow),
        }


def _side(rows: list[tuple[str, str, str | None]], which: int) -> SideFigures:
    accepted = [row for row in rows if row[which] == "accept"]
    labelled = [row for row in accepted if row[2] is not None]
    return SideFigures(
        accepted=len(accepted),
        coverage=len(accepted) / len(rows) if rows else 0.0,
        labelled_accepted=len(labelled),
        correct_accepted=sum(1 for row in labelled if row[2] == "correct"),
    )


def compare_shadow(
    settings: StorageSettings, route: str | None = None, since: float | None = None
) -> list[ShadowComparison]:
    """One comparison per candidate artifact found in the store, newest first."""
    label = and_(
        feedback.c.request_id == decisions.c.request_id, feedback.c.current, feedback.c.choice == 0
    )
    query = (
        select(
            shadow_decisions.c.artifact_id,
            decisions.c.artifact_id,
            decisions.c.decision,
            shadow_decisions.c.decision,
            feedback.c.label,
            shadow_decisions.c.created,
        )
        .join(decisions, decisions.c.request_id == shadow_decisions.c.request_id)
        .outerjoin(feedback, label)
    )
    if route is not None:
        query = query.where(decisions.c.route == route)
    if since is not None:
        query = query.where(decisions.c.created >= since)
    engine = make_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            fetched = list(connection.execute(query))
    finally:
        engine.dispose()
    per_candidate: dict[str, list[Any]] = {}
    newest: dict[str, float] = {}
    for row in fetched:
        per_candidate.setdefault(row[0], []).append(row)
        newest[row[0]] = max(newest.get(row[0], 0.0), float(row[5]))
    comparisons = []
    for candidate in sorted(per_candidate, key=lambda name: -newest[name]):
        rows = per_candidate[candidate]
        triples = [(str(r[2]), str(r[3]), None if r[4] is None else str(r[4])) for r in rows]
        comparisons.append(
            ShadowComparison(
                candidate=candidate,
                live_artifacts=tuple(sorted({str(r[1]) for r in rows})),
                requests=len(rows),
                labelled=sum(1 for t in triples if t[2] is not None),
                agreement=sum(1 for t in triples if t[0] == t[1]) / len(rows),
                live=_side(triples, 0),
                shadow=_side(triples, 1),
            )
        )
    return comparisons


def format_comparison(comparison: ShadowComparison) -> str:
    """The table ``verifier compare`` prints."""

    def precision(figures: SideFigures) -> str:
        value = figures.precision
        return "-" if value is None else f"{value:.3f} of {figures.labelled_accepted}"

    lines = [
        f"candidate {comparison.candidate} vs live {', '.join(comparison.live_artifacts)}",
        f"  requests {comparison.requests}, labelled {comparison.labelled}, "
        f"agreement {comparison.agreement:.3f}",
        f"  {'':<10} {'accepted':>8} {'coverage':>9} {'accepted precision':>20}",
    ]
    for name, figures in (("live", comparison.live), ("candidate", comparison.shadow)):
        lines.append(
            f"  {name:<10} {figures.accepted:>8} {figures.coverage:>9.3f} {precision(figures):>20}"
        )
    return "\n".join(lines)
