"""The console's reads of the decision store: per-route counts over a window, counts over time,
and the review queue. Each is a few grouped queries over indexed columns (``0005_console``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, select

from sdm_router.core.decisions import HUMAN_SOURCE
from sdm_router.storage.labels import effective_labels
from sdm_router.storage.tables import decisions, feedback

DECISIONS = ("accept", "abstain", "unverified", "observed")


@dataclass(slots=True)
class RouteCounts:
    """One route over a window: requests by decision, escalated and retrieved requests, and the
    accepted answers' labels that count."""

    route: str
    requests: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    escalated: int = 0
    retrieved: int = 0
    accepted_labelled: int = 0
    accepted_correct: int = 0

    def share(self, count: int) -> float:
        """``count`` as a share of the requests (0 without requests)."""
        return count / self.requests if self.requests else 0.0


def _rows(connection: Connection, query: Any) -> list[Any]:
    return list(connection.execute(query))


def _window(query: Any, since: float, until: float, key_name: str | None) -> Any:
    query = query.where(decisions.c.created >= since, decisions.c.created < until)
    if key_name is not None:
        query = query.where(decisions.c.key_name == key_name)
    return query


def overview_counts(
    connection: Connection, since: float, until: float, key_name: str | None, buckets: int
) -> tuple[dict[str, RouteCounts], dict[str, list[dict[str, int]]]]:
    """Per route over the window: requests by decision, escalations (more than one attempt) and
    requests that retrieved context; and per route ``buckets`` equal slices of the window with
    their requests and accepted requests. One scan of the overview index."""
    routes: dict[str, RouteCounts] = {}
    series: dict[str, list[dict[str, int]]] = {}
    width = (until - since) / buckets
    slot = func.floor((decisions.c.created - since) / width)
    grouped = _window(
        select(
            decisions.c.route,
            decisions.c.decision,
            slot,
            func.count(),
            func.sum(case((decisions.c.attempt_count > 1, 1), else_=0)),
            func.sum(case((decisions.c.retrieved, 1), else_=0)),
        ),
        since, until, key_name,
    ).group_by(decisions.c.route, decisions.c.decision, slot)  # fmt: skip
    for row in _rows(connection, grouped):
        name, decision, count = str(row[0]), str(row[1]), int(row[3])
        entry = routes.setdefault(name, RouteCounts(name))
        entry.by_decision[decision] = entry.by_decision.get(decision, 0) + count
        entry.requests += count
        entry.escalated += int(row[4] or 0)
        entry.retrieved += int(row[5] or 0)
        points = series.setdefault(name, [{"requests": 0, "accepted": 0} for _ in range(buckets)])
        point = points[min(max(int(row[2]), 0), buckets - 1)]
        point["requests"] += count
        if decision == "accept":
            point["accepted"] += count
    return routes, series


def accepted_labels(
    connection: Connection, since: float, until: float, key_name: str | None
) -> dict[str, tuple[int, int]]:
    """Per route, the window's accepted answers with a counting label: (labelled, correct)."""
    counting = effective_labels()  # from the labels (fewer than the decisions), not per decision
    labelled = _window(
        select(
            decisions.c.route,
            func.count(),
            func.sum(case((counting.c.label == "correct", 1), else_=0)),
        )
        .select_from(counting)
        .join(decisions, decisions.c.request_id == counting.c.request_id)
        .where(decisions.c.decision == "accept", counting.c.choice == 0),
        since, until, key_name,
    ).group_by(decisions.c.route)  # fmt: skip
    return {str(row[0]): (int(row[1]), int(row[2] or 0)) for row in _rows(connection, labelled)}


def review_queue(connection: Connection, key_name: str | None, limit: int) -> list[dict[str, Any]]:
    """Decisions a person should look at, oldest first: those whose answer (choice 0) has no
    label, and those whose judge's label disagrees with the verifier (an accepted answer judged
    incorrect, an abstention judged correct) or with a person's label. Each row says why
    (``unlabeled``, ``judge_vs_verifier``, ``judge_vs_human``)."""
    label = feedback.alias("any_label")
    human = feedback.alias("human")
    judge = feedback.alias("judge")
    current = (
        label.c.current & (label.c.request_id == decisions.c.request_id) & (label.c.choice == 0)
    )
    unlabeled = ~exists(select(label.c.id).where(current))
    is_human = and_(
        human.c.request_id == decisions.c.request_id, human.c.current, human.c.choice == 0,
        human.c.source == HUMAN_SOURCE,
    )  # fmt: skip
    is_machine = and_(
        judge.c.request_id == decisions.c.request_id, judge.c.current, judge.c.choice == 0,
        judge.c.source != HUMAN_SOURCE,
    )  # fmt: skip
    against_verifier = exists(
        select(judge.c.id).where(
            is_machine,
            ((decisions.c.decision == "accept") & (judge.c.label == "incorrect"))
            | ((decisions.c.decision == "abstain") & (judge.c.label == "correct")),
        )
    ) & ~exists(select(human.c.id).where(is_human))
    against_human = exists(
        select(judge.c.id)
        .select_from(judge.join(human, human.c.request_id == judge.c.request_id))
        .where(is_machine, is_human, human.c.choice == judge.c.choice,
               human.c.label != judge.c.label)
    )  # fmt: skip
    why = case(
        (unlabeled, "unlabeled"), (against_verifier, "judge_vs_verifier"), else_="judge_vs_human"
    )
    query = select(
        decisions.c.request_id, decisions.c.created, decisions.c.route, decisions.c.decision,
        decisions.c.reason, decisions.c.answer, why.label("why"),
    ).where(unlabeled | against_verifier | against_human)  # fmt: skip
    if key_name is not None:
        query = query.where(decisions.c.key_name == key_name)
    query = query.order_by(decisions.c.created, decisions.c.request_id).limit(limit)
    return [row._asdict() for row in _rows(connection, query)]
