"""The metrics of labelling, judge–human agreement and the live guarantee: part of
``GatewayMetrics`` (which inherits them), defined here once. Label values come from closed sets
(``LabelingEvent``, the label kinds, the guarantee statuses); ``route`` and ``source`` from
config."""

from __future__ import annotations

import math
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from sdm_router.core.guarantee import Guarantee, GuaranteeStatus
from sdm_router.observability.closed_labels import check, check_name

LabelingEvent = Literal[
    "sampled",  # an answer was queued for the judge
    "labelled",  # the judge's label went to the decision store's writer
    "unusable",  # the judge's reply began with neither correct nor incorrect: no label
    "judge_error",  # a judge (or reference) call failed; retried up to labeling.max_attempts
    "dropped_full",  # the labelling queue was full: the answer is not labelled
    "dropped_failed",  # every attempt failed (a judge outage)
    "dropped_shutdown",  # still queued when the gateway stopped
]
AutopilotEvent = Literal[
    "followed",  # this replica swapped to the registry's live artifact
    "follow_refused",  # the registry's live artifact was refused: the old one serves
    "follow_error",  # the registry could not be read (retried next poll)
    "rolled_back",  # this replica rolled the registry's live artifact back
    "build",  # the loop built a candidate
    "promoted",  # the gate passed: the candidate is live
    "refused",  # the gate refused the candidate
    "error",  # a build or gate failed
]
LabelKindName = Literal["human", "judge", "reference"]
FeedbackLabelName = Literal["correct", "incorrect"]

LABELING_EVENTS: Final[frozenset[str]] = frozenset(get_args(LabelingEvent))
AUTOPILOT_EVENTS: Final[frozenset[str]] = frozenset(get_args(AutopilotEvent))
LABEL_KINDS: Final[frozenset[str]] = frozenset(get_args(LabelKindName))
FEEDBACK_LABELS: Final[frozenset[str]] = frozenset(get_args(FeedbackLabelName))
GUARANTEE_STATUSES: Final[tuple[str, ...]] = tuple(status.value for status in GuaranteeStatus)


class LabelMetrics:
    """Labelling and guarantee metrics; ``_define_label_metrics`` registers them."""

    def _define_label_metrics(self, registry: CollectorRegistry) -> None:
        """Labelling, judge agreement and the live guarantee (docs/guarantee.md)."""
        self._labeling_events = Counter(
            "sdm_router_labeling_events",
            "What happened to answers sampled for the judge: sampled, labelled, unusable, "
            "judge_error, dropped_full, dropped_failed, dropped_shutdown (written labels: "
            "sdm_router_decision_store_records_total).",
            ["event"],
            registry=registry,
        )
        for event in sorted(LABELING_EVENTS):
            self._labeling_events.labels(event=event)
        self._labeling_queue = Gauge(
            "sdm_router_labeling_queue_depth",
            "Answers waiting for the judge.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._labels = Counter(
            "sdm_router_labels",
            "Labels recorded, by kind of source (human|judge|reference) and label.",
            ["kind", "label"],
            registry=registry,
        )
        self._agreement = Gauge(
            "sdm_router_label_agreement",
            "Share of the answers both a person and a machine source labelled where they "
            "agree, by machine source (judge:<backend>|reference:<backend>); NaN before any.",
            ["source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._agreement_pairs = Gauge(
            "sdm_router_label_agreement_pairs",
            "Answers labelled by both a person and the machine source.",
            ["source"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._guarantee: dict[str, Gauge] = {
            name: Gauge(
                f"sdm_router_guarantee_{name}",
                help_text,
                ["route"],
                registry=registry,
                multiprocess_mode="livemax",
            )
            for name, help_text in (
                ("labelled", "Labelled accepted answers the route's live guarantee counts."),
                ("correct", "Of those, how many are labelled correct."),
                ("precision", "Their share labelled correct (NaN without labels)."),
                ("lower_bound", "One-sided Clopper-Pearson lower bound on the precision."),
                ("accept_alpha", "The route's effective accept_alpha (tightened or not)."),
                ("observing", "1 while the route is in observe mode (answers unverified)."),
            )
        }
        self._autopilot_events = Counter(
            "sdm_router_autopilot_events",
            "The autopilot's steps and the replicas following it: followed, follow_refused, "
            "follow_error, rolled_back, build, promoted, refused, error.",
            ["event"],
            registry=registry,
        )
        for event in sorted(AUTOPILOT_EVENTS):
            self._autopilot_events.labels(event=event)
        self._autopilot_lower_bound = Gauge(
            "sdm_router_autopilot_candidate_lower_bound",
            "The last candidate's one-sided lower bound on its held-out accepted precision.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._guarantee_status = Gauge(
            "sdm_router_guarantee_status",
            "The route's guarantee status (holding|provisional|unknown|breached): 1 for the "
            "current one, 0 for the others.",
            ["route", "status"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def labeling_event(self, event: str) -> None:
        """Count one labelling event (``LabelingEvent``)."""
        check(event, LABELING_EVENTS, "event")
        self._labeling_events.labels(event=event).inc()

    def autopilot_event(self, event: str) -> None:
        """Count one autopilot event (``AutopilotEvent``)."""
        check(event, AUTOPILOT_EVENTS, "event")
        self._autopilot_events.labels(event=event).inc()

    def autopilot_candidate(self, lower_bound: float) -> None:
        """Publish the last candidate's held-out lower bound."""
        self._autopilot_lower_bound.set(lower_bound)

    def labeling_queue(self, depth: int) -> None:
        """Publish how many answers wait for the judge."""
        self._labeling_queue.set(depth)

    def label_given(self, kind: str, label: str) -> None:
        """Count one recorded label."""
        check(kind, LABEL_KINDS, "kind")
        check(label, FEEDBACK_LABELS, "label")
        self._labels.labels(kind=kind, label=label).inc()

    def label_agreement(self, source: str, rate: float | None, pairs: int) -> None:
        """Publish a machine source's agreement with people (NaN without shared answers)."""
        check_name(source, "source")
        self._agreement.labels(source=source).set(math.nan if rate is None else rate)
        self._agreement_pairs.labels(source=source).set(pairs)

    def route_guarantee(
        self, route: str, guarantee: Guarantee, observing: bool, accept_alpha: float
    ) -> None:
        """Publish a route's live guarantee, whether it observes and its accept_alpha."""
        check_name(route, "route")
        precision = guarantee.precision
        values = {
            "labelled": guarantee.labelled,
            "correct": guarantee.correct,
            "precision": math.nan if precision is None else precision,
            "lower_bound": guarantee.lower,
            "accept_alpha": accept_alpha,
            "observing": 1.0 if observing else 0.0,
        }
        for name, value in values.items():
            self._guarantee[name].labels(route=route).set(value)
        for status in GUARANTEE_STATUSES:
            current = 1.0 if status == guarantee.status.value else 0.0
            self._guarantee_status.labels(route=route, status=status).set(current)
