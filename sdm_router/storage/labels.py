"""Labels in the decision store: writing one (any source), and the rule that says which label
counts for an answer.

Every source keeps its own current label per answer (request, choice); older labels of that
source stay as history. The label that counts, wherever labels are read (listings,
``labelled_answers``, ``data import --from-store``, the guarantee), is a person's when one was
given, else the newest machine label (judge or reference). So a human label *overrides* a
machine label without erasing it: both stay, the judge's still counts towards judge–human
agreement, and removing nothing makes the override reversible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Select, Subquery, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from sdm_router.core.decisions import (
    HUMAN_SOURCE,
    FeedbackLabel,
    LabelAgreement,
    LabelKind,
    LabelledAnswer,
)
from sdm_router.core.errors import StoreUnavailable
from sdm_router.core.generation import Message, TokenLogprob
from sdm_router.storage.tables import attempts, decisions, feedback


def _of_kinds(table: Any, kinds: Collection[LabelKind] | None) -> Any:
    """A filter on ``table.source`` (``feedback`` or an alias) keeping the given kinds (None:
    every kind)."""
    if kinds is None:
        return True
    clauses = [
        table.c.source == HUMAN_SOURCE
        if kind is LabelKind.HUMAN
        else table.c.source.like(f"{kind.value}:%")
        for kind in kinds
    ]
    return or_(*clauses) if clauses else False


def _counting_first(table: Any) -> tuple[Any, Any]:
    """The order of an answer's current labels in which the first counts: a person's, else the
    newest. The rule's one home (both queries below order by it)."""
    return case((table.c.source == HUMAN_SOURCE, 0), else_=1), table.c.id.desc()


def effective_labels(kinds: Collection[LabelKind] | None = None) -> Subquery:
    """One row per labelled answer (request_id, choice): the current label that counts, with
    its source, logprob and time; only labels of ``kinds`` are considered. Ranks every current
    label: for listings; ``counting_label_id`` serves a query over a few decisions."""
    rank = func.row_number().over(
        partition_by=(feedback.c.request_id, feedback.c.choice),
        order_by=_counting_first(feedback),
    )
    ranked = (
        select(
            feedback.c.request_id,
            feedback.c.choice,
            feedback.c.label,
            feedback.c.source,
            feedback.c.logprob,
            feedback.c.created,
            rank.label("rank"),
        )
        .where(feedback.c.current & _of_kinds(feedback, kinds))
        .subquery("ranked")
    )
    return select(ranked).where(ranked.c.rank == 1).subquery("effective")


def counting_label_id(kinds: Collection[LabelKind] | None = None, choice: int = 0) -> Any:
    """The id of the label that counts for a decision's answer ``choice``, correlated with
    ``decisions`` (one index lookup per decision: the guarantee and the export read the newest
    decisions of a route, never every label)."""
    candidate = feedback.alias("candidate")
    return (
        select(candidate.c.id)
        .where(
            (candidate.c.request_id == decisions.c.request_id)
            & (candidate.c.choice == choice)
            & candidate.c.current
            & _of_kinds(candidate, kinds)
        )
        .order_by(*_counting_first(candidate))
        .limit(1)
        .correlate(decisions)
        .scalar_subquery()
    )


def write_label(
    connection: Connection,
    identifier: str,
    label: FeedbackLabel,
    choice: int,
    note: str | None,
    source: str,
    logprob: float | None,
) -> tuple[str, bool] | None:
    """Record ``source``'s label on an answer in one transaction; None for an unknown request.
    Returns (request id, changed): the same label again from the same source changes nothing,
    a new one replaces that source's current label (kept as history). Raises
    ``IntegrityError`` when a concurrent label of the same source won the unique index."""
    found = connection.execute(
        select(decisions.c.request_id).where(
            (decisions.c.request_id == identifier) | (decisions.c.response_id == identifier)
        )
    ).first()
    if found is None:
        return None
    request_id = str(found[0])
    mine = (
        (feedback.c.request_id == request_id)
        & (feedback.c.choice == choice)
        & (feedback.c.source == source)
    )
    current = connection.execute(
        select(feedback.c.label, feedback.c.note).where(mine & feedback.c.current)
    ).first()
    if current is not None and (current[0], current[1]) == (label, note):
        return request_id, False
    connection.execute(update(feedback).where(mine & feedback.c.current).values(current=False))
    connection.execute(
        feedback.insert().values(
            request_id=request_id, choice=choice, label=label, note=note, created=time.time(),
            current=True, source=source, logprob=logprob,
        )
    )  # fmt: skip
    return request_id, True


def write_label_retrying(connection_factory: Any, *args: Any) -> tuple[str, bool] | None:
    """``write_label`` in its own transaction, retried when a concurrent label of the same
    source took the unique index first (``connection_factory``: ``engine.begin``)."""
    for _ in range(3):
        try:
            with connection_factory() as connection:
                return write_label(connection, *args)
        except IntegrityError:
            continue
    raise StoreUnavailable("the label kept conflicting with concurrent labels; retry")


def _deciding_attempt() -> Any:
    """The position of a decision's last attempt (the one that decided)."""
    later = attempts.alias("later")
    return (
        select(func.max(later.c.position))
        .where(later.c.request_id == decisions.c.request_id)
        .correlate(decisions)
        .scalar_subquery()
    )


def labelled_answers_query(
    *,
    route: str | None = None,
    artifact_id: str | None = None,
    decision: Collection[str] | None = None,
    since: float | None = None,
    kinds: Collection[LabelKind] | None = None,
    with_text: bool = False,
    newest_first: bool = False,
    limit: int | None = None,
) -> Select[Any]:
    """The labelled answers (choice 0) of decisions, filtered, with the label that counts."""
    columns = [
        decisions.c.request_id, decisions.c.created, decisions.c.route, decisions.c.decision,
        decisions.c.artifact_id, decisions.c.answer_model, feedback.c.label, feedback.c.source,
        feedback.c.logprob, attempts.c.region_alpha, attempts.c.region_alpha_lower,
    ]  # fmt: skip
    if with_text:
        columns += [decisions.c.conversation, decisions.c.answer, decisions.c.answer_logprobs]
    query = (
        select(*columns)
        .select_from(decisions)
        .join(feedback, feedback.c.id == counting_label_id(kinds))
        .outerjoin(
            attempts,
            (attempts.c.request_id == decisions.c.request_id)
            & (attempts.c.position == _deciding_attempt()),
        )
    )
    if route is not None:
        query = query.where(decisions.c.route == route)
    if artifact_id is not None:
        query = query.where(decisions.c.artifact_id == artifact_id)
    if decision is not None:
        query = query.where(decisions.c.decision.in_(list(decision)))
    if since is not None:
        query = query.where(decisions.c.created >= since)
    if with_text:
        query = query.where(decisions.c.conversation.is_not(None) & decisions.c.answer.is_not(None))
    order = decisions.c.created.desc() if newest_first else decisions.c.created
    query = query.order_by(order, decisions.c.request_id)
    return query if limit is None else query.limit(limit)


def labelled_answer(row: Any) -> LabelledAnswer:
    """A row of ``labelled_answers_query`` as a ``LabelledAnswer`` (text when selected)."""
    mapping = row._mapping
    conversation = answer_logprobs = None
    if mapping.get("conversation") is not None:
        conversation = tuple(
            Message(role=turn["role"], content=turn["content"])
            for turn in json.loads(mapping["conversation"])
        )
    if mapping.get("answer_logprobs") is not None:
        pairs = json.loads(mapping["answer_logprobs"])
        answer_logprobs = tuple(TokenLogprob(str(t), float(lp)) for t, lp in pairs)
    return LabelledAnswer(
        request_id=str(mapping["request_id"]),
        created=float(mapping["created"]),
        route=str(mapping["route"]),
        decision=str(mapping["decision"]),
        artifact_id=str(mapping["artifact_id"]),
        label="correct" if mapping["label"] == "correct" else "incorrect",
        source=str(mapping["source"]),
        logprob=mapping["logprob"],
        region_alpha=mapping["region_alpha"],
        region_alpha_lower=mapping["region_alpha_lower"],
        answer_model=mapping["answer_model"],
        conversation=conversation,
        answer=mapping.get("answer"),
        answer_logprobs=answer_logprobs,
    )


def label_agreement(connection: Connection, since: float | None = None) -> list[LabelAgreement]:
    """Per machine source: how its current labels agree with people's current labels on the
    answers both labelled (labels given since ``since``, by the machine label's time)."""
    human = feedback.alias("human")
    machine = feedback.alias("machine")
    query = (
        select(
            machine.c.source.label("source"),
            human.c.label.label("human"),
            machine.c.label.label("machine"),
            func.count().label("answers"),
        )
        .select_from(human)
        .join(
            machine,
            (machine.c.request_id == human.c.request_id) & (machine.c.choice == human.c.choice),
        )
        .where(human.c.current & (human.c.source == HUMAN_SOURCE))
        .where(machine.c.current & (machine.c.source != HUMAN_SOURCE))
        .group_by(machine.c.source, human.c.label, machine.c.label)
    )
    if since is not None:
        query = query.where(machine.c.created >= since)
    counts: dict[str, dict[tuple[str, str], int]] = {}
    for row in connection.execute(query):
        counts.setdefault(str(row.source), {})[(str(row.human), str(row.machine))] = row.answers
    return [LabelAgreement(source, pairs) for source, pairs in sorted(counts.items())]


def counting_label(connection: Connection, request_id: str) -> dict[str, Any] | None:
    """The label that counts for a request's answer (choice 0): ``{label, source}``, or None."""
    row = connection.execute(
        select(feedback.c.label, feedback.c.source)
        .select_from(decisions)
        .join(feedback, feedback.c.id == counting_label_id())
        .where(decisions.c.request_id == request_id)
    ).first()
    return None if row is None else {"label": row.label, "source": row.source}


def feedback_history(connection: Connection, request_id: str) -> list[dict[str, Any]]:
    """Every label of a request, oldest first, as the decision endpoint shows them."""
    keys = ("choice", "label", "source", "logprob", "note", "created", "current")
    return [
        {key: row._mapping[key] for key in keys}
        for row in connection.execute(
            select(feedback).where(feedback.c.request_id == request_id).order_by(feedback.c.id)
        )
    ]
