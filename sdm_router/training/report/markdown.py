"""``report.md``: the goals, the acceptance check, the precision-recall figure, then per split a
summary, the gateway-view tables, the papers' metric, the per-family tables and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .estimators import FAMILY_MIN_ROWS
from .goals import Goal
from .metrics import TABLE_ALPHAS
from .results import FAMILY_ALPHA, AcceptanceCheck, SplitReport

TEST_READ_ONCE = (
    "The test split is read once, for this report; every setting was chosen on "
    "training/calibration data."
)

_NOTES = f"""\
Notes. *Admitted set*: the rows an estimator admits at α, of either predicted class; the papers'
metric requires every class-conditional (by true y) and prediction-conditional (by ŷ) accuracy
to be ≥ α ("meets α"); admitting nothing is "rejects all". *Accepted answers*: what the gateway
would serve, admitted ∧ ŷ = correct; precision = fraction truly correct, recall =
fraction of all correct answers accepted. `sdm-*` admit rows whose assigned region alpha is ≥ α;
`softmax` admits max softmax(z′) ≥ α; `mean-logprob` accepts answers whose mean token logprob
reaches the smallest calibration threshold with ≥ α correct (it only ever predicts "correct", so
any admitted wrong answer makes its y = incorrect cell 0); `mean-logprob-family` fits that
threshold per task family on the family's own calibration rows (families with fewer than
{FAMILY_MIN_ROWS} calibration rows with logprobs, and families absent from calibration such as
the shift families, use the global threshold); `conformal` is split-conformal LAC on the same
softmax with ε = 1 − α, admitting singleton sets. Baseline thresholds are fitted on the
calibration split. Cells show `—` when nothing falls in them. *Splits* (each section's numbers
come from the file named for it under `data` above): `test` holds facts never in training or
calibration; `shift` whole held-out families; `phrasing` the held-out templates, whose facts may
be in training in other wordings (docs/verifier-data.md). The goals read the splits called
`test`, `shift` and `phrasing`.
"""


def fmt_rate(value: float | None) -> str:
    """A proportion as a percentage with one decimal, ``—`` for None."""
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_accuracy(value: float | None) -> str:
    """An accuracy with three decimals, ``—`` for None."""
    return "—" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def acceptance_section(checks: Sequence[AcceptanceCheck]) -> list[str]:
    """The issue's acceptance criterion, one row per split."""
    rows = [
        [
            c.split,
            c.estimator,
            f"{c.alpha:.2f}",
            c.verdict,
            fmt_rate(c.admission_rate),
            "yes" if c.holds else "**NO**",
        ]
        for c in checks
    ]
    header = ["split", "estimator", "α", "verdict", "admitted", "criterion holds"]
    return ["## Acceptance", "", *_table(header, rows), ""]


def _summary(report: SplitReport) -> list[str]:
    balance = " / ".join(f"y={c}: {n}" for c, n in enumerate(report.class_counts))
    q, d = report.q or {}, report.d or {}
    families = _table(
        ["family", "rows", "generator accuracy"],
        [[f.family, str(f.rows), fmt_accuracy(f.generator_accuracy)] for f in report.families],
    )
    return [
        f"## Split `{report.name}` ({report.rows} rows)",
        "",
        f"- class balance (1 = answer correct): {balance}",
        f"- generator accuracy (label = 1): {fmt_accuracy(report.generator_accuracy)}; "
        f"verifier accuracy (ŷ = y, all rows): {fmt_accuracy(report.verifier_accuracy)}",
        f"- q min/median/p90/max: {_quartet(q)}; d: {_quartet(d)}; "
        f"OOD (q = 0) rate: {fmt_rate(report.ood_rate)}",
        "",
        *families,
        "",
    ]


def _quartet(values: dict[str, float]) -> str:
    return "/".join(f"{values[k]:.3g}" for k in ("min", "median", "p90", "max")) if values else "—"


def admitted_table(report: SplitReport, alphas: Sequence[float] = TABLE_ALPHAS) -> list[str]:
    """The papers' metric for every estimator at each of ``alphas``."""
    rows = []
    for alpha in alphas:
        for curve in report.curves:
            s = curve.at(alpha)
            rows.append(
                [
                    f"{alpha:.2f}",
                    curve.name,
                    fmt_rate(s.admission_rate),
                    str(s.admitted),
                    fmt_accuracy(s.marginal_accuracy),
                    fmt_accuracy(s.min_class_accuracy),
                    fmt_accuracy(s.min_prediction_accuracy),
                    s.verdict,
                ]
            )
    header = ["α", "estimator", "admitted", "n", "marginal acc", "min class-cond acc"]
    return _table([*header, "min pred-cond acc", "meets α"], rows)


def accepted_table(report: SplitReport, alphas: Sequence[float] = TABLE_ALPHAS) -> list[str]:
    """The gateway view (admitted ∧ ŷ = correct) for every estimator at each of ``alphas``."""
    rows = [
        [
            f"{alpha:.2f}",
            curve.name,
            fmt_rate(curve.at(alpha).acceptance_rate),
            str(curve.at(alpha).accepted),
            fmt_accuracy(curve.at(alpha).precision),
            fmt_accuracy(curve.at(alpha).recall),
            curve.at(alpha).gateway_verdict,
        ]
        for alpha in alphas
        for curve in report.curves
    ]
    header = ["α", "estimator", "accepted", "n", "precision", "recall", "precision ≥ α"]
    return _table(header, rows)


def family_table(report: SplitReport) -> list[str]:
    """Per family: each estimator's admission and admitted accuracy at FAMILY_ALPHA."""
    header = ["family", "rows", *(c.name for c in report.curves)]
    rows = [
        [
            f.family,
            str(f.rows),
            *(
                f"{fmt_rate(s.admission_rate)} @ {fmt_accuracy(s.marginal_accuracy)}"
                for s in f.estimators
            ),
        ]
        for f in report.families
    ]
    return _table(header, rows)


def family_gateway_table(report: SplitReport, alphas: Sequence[float] = TABLE_ALPHAS) -> list[str]:
    """Per family and alpha: every estimator's accepted % · precision · recall."""
    header = ["family", "rows", "α", *(c.name for c in report.curves)]
    rows = [
        [
            f.family,
            str(f.rows),
            f"{alpha:.2f}",
            *(
                f"{fmt_rate(s.acceptance_rate)} · {fmt_accuracy(s.precision)} · "
                f"{fmt_accuracy(s.recall)}"
                for s in f.at(alpha)
            ),
        ]
        for f in report.families
        for alpha in alphas
        if alpha in f.alphas
    ]
    return _table(header, rows)


def split_section(report: SplitReport, plots: Sequence[str]) -> list[str]:
    """Summary, the gateway view first, the papers' metric, per-family tables, plot links."""
    return [
        *_summary(report),
        "### Accepted answers (gateway view: admitted ∧ ŷ = correct)",
        "",
        *accepted_table(report),
        "",
        "### Admitted set (papers' metric: class- and prediction-conditional accuracy)",
        "",
        *admitted_table(report),
        "",
        "### Accepted answers per family (gateway view)",
        "",
        "Cell: accepted % · precision · recall of correct answers.",
        "",
        *family_gateway_table(report),
        "",
        f"### Admitted set per family at α = {FAMILY_ALPHA} (admitted % @ accuracy of admitted)",
        "",
        *family_table(report),
        "",
        *(f"![{name}]({name})" for name in plots),
        "",
    ]


def goals_section(goals: Sequence[Goal]) -> list[str]:
    """The issue's goals, one row per goal, one column per estimator."""
    estimators = list(dict.fromkeys(g.estimator for g in goals))
    keys = list(dict.fromkeys(g.key for g in goals))
    cells = {(g.key, g.estimator): g for g in goals}
    verdicts = {True: "**met**", False: "not met", None: "not evaluated"}
    rows = []
    for key in keys:
        first = next(g for g in goals if g.key == key)
        row = [first.target]
        for estimator in estimators:
            goal = cells.get((key, estimator))
            row.append("—" if goal is None else f"{verdicts[goal.met]}: {goal.figure}")
        rows.append(row)
    return [
        "## Goals (test split unless named, α = 0.95, gateway view)",
        "",
        *_table(["goal", *estimators], rows),
        "",
    ]


def render_report(
    reports: Sequence[SplitReport],
    checks: Sequence[AcceptanceCheck],
    plots: dict[str, list[str]],
    meta: dict[str, Any],
    goals: Sequence[Goal] = (),
) -> str:
    """The whole ``report.md``; ``plots`` maps split name to its PNG file names (a name ending in
    ``-precision-recall.png`` is also shown at the top, for the test split)."""
    header = ["# Verifier evaluation", ""]
    header += [f"- {key}: {value}" for key, value in meta.items()]
    lines = [*header, "", TEST_READ_ONCE, ""]
    if goals:
        lines += goals_section(goals)
    lines += acceptance_section(checks)
    figure = [p for p in plots.get("test", []) if p.endswith("-precision-recall.png")]
    if figure:
        lines += [
            "## Precision against recall (test split, gateway view)",
            "",
            "SDM estimators, `mean-logprob-family` and `conformal` sweep α (0.50–0.995); "
            "`softmax` and `mean-logprob` sweep every threshold of their score on the test split "
            "(the best any threshold of theirs could do); stars mark α = 0.95.",
            "",
            *(f"![{name}]({name})" for name in figure),
            "",
        ]
    for report in reports:
        shown = [p for p in plots.get(report.name, []) if report.name != "test" or p not in figure]
        lines += split_section(report, shown)
    return "\n".join([*lines, _NOTES])
