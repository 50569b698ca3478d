"""The console's reads of the decision store: per-route counts over a window, counts over time,
and the review queue. Each is a few grouped queries over indexed columns (``0005_console``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, select

from sdm_router.core.decisions import HUMAN_SOURCE
from sdm_router.storage.labels import counting_label_id
from sdm_router.storage.tables import attempts, decisions, feedback

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


def route_counts(
    connection: Connection, since: float, until: float, key_name: str | None
) -> list[RouteCounts]:
    """Per route, the window's requests by decision, escalations (a second attempt), requests
    that retrieved context, and the accepted answers' counting labels."""
    routes: dict[str, RouteCounts] = {}

    def route(name: str) -> RouteCounts:
        return routes.setdefault(name, RouteCounts(name))

    grouped = _window(
        select(decisions.c.route, decisions.c.decision, func.count()), since, until, key_name
    ).group_by(decisions.c.route, decisions.c.decision)
    for row in _rows(connection, grouped):
        entry, count = route(str(row[0])), int(row[2])
        entry.by_decision[str(row[1])] = count
        entry.requests += count
    escalated = _window(
        select(decisions.c.route, func.count())
        .select_from(decisions)
        .join(attempts, attempts.c.request_id == decisions.c.request_id)
        .where(attempts.c.position == 1),
        since, until, key_name,
    ).group_by(decisions.c.route)  # fmt: skip
    for row in _rows(connection, escalated):
        route(str(row[0])).escalated = int(row[1])
    retrieved = _window(
        select(decisions.c.route, func.count(func.distinct(attempts.c.request_id)))
        .select_from(decisions)
        .join(attempts, attempts.c.request_id == decisions.c.request_id)
        .where(attempts.c.retrieved_context),
        since, until, key_name,
    ).group_by(decisions.c.route)  # fmt: skip
    for row in _rows(connection, retrieved):
        route(str(row[0])).retrieved = int(row[1])
    labelled = _window(
        select(
            decisions.c.route,
            func.count(),
            func.sum(case((feedback.c.label == "correct", 1), else_=0)),
        )
        .select_from(decisions)
        .join(feedback, feedback.c.id == counting_label_id())
        .where(decisions.c.decision == "accept"),
        since, until, key_name,
    ).group_by(decisions.c.route)  # fmt: skip
    for row in _rows(connection, labelled):
        entry = route(str(row[0]))
        entry.accepted_labelled, entry.accepted_correct = int(row[1]), int(row[2] or 0)
    return sorted(routes.values(), key=lambda entry: entry.route)


def timeline(
    connection: Connection, since: float, until: float, key_name: str | None, buckets: int
) -> dict[str, list[dict[str, int]]]:
    """Per route, ``buckets`` equal slices of the window: requests and accepted requests."""
    width = (until - since) / buckets
    slot = func.floor((decisions.c.created - since) / width)
    query = _window(
        select(
            decisions.c.route,
            slot.label("slot"),
            func.count(),
            func.sum(case((decisions.c.decision == "accept", 1), else_=0)),
        ),
        since, until, key_name,
    ).group_by(decisions.c.route, slot)  # fmt: skip
    series: dict[str, list[dict[str, int]]] = {}
    for name, position, count, accepted in _rows(connection, query):
        points = series.setdefault(name, [{"requests": 0, "accepted": 0} for _ in range(buckets)])
        index = min(max(int(position), 0), buckets - 1)
        points[index]["requests"] += count
        points[index]["accepted"] += int(accepted or 0)
    return series


def review_queue(connection: Connection, key_name: str | None, limit: int) -> list[dict[str, Any]]:
    """Decisions a person should look at, oldest first: those without any label, and those
    whose judge's label disagrees with the verifier (an accepted answer judged incorrect, an
    abstention judged correct) or with a person's label. Each row says why (``unlabeled``,
    ``judge_vs_verifier``, ``judge_vs_human``)."""
    label = feedback.alias("any_label")
    human = feedback.alias("human")
    judge = feedback.alias("judge")
    current = label.c.current & (label.c.request_id == decisions.c.request_id)
    unlabeled = ~exists(select(label.c.id).where(current))
    is_human = and_(
        human.c.request_id == decisions.c.request_id, human.c.current,
        human.c.source == HUMAN_SOURCE,
    )  # fmt: skip
    is_machine = and_(
        judge.c.request_id == decisions.c.request_id, judge.c.current,
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
