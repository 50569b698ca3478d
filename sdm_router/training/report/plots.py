"""PNG plots of a split report (matplotlib's Agg canvas; no pyplot global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import AdmissionStats
from .results import FAMILY_ALPHA, SplitReport

_MARKERS = ("o", "s", "^", "D", "v", "P")


def _figure(width: float, height: float, columns: int) -> tuple[Figure, list[Any]]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, columns, squeeze=False)[0])


def _points(stats: tuple[AdmissionStats, ...], gateway: bool) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for s in stats:
        value = s.precision if gateway else s.marginal_accuracy
        if value is not None:
            xs.append(s.acceptance_rate if gateway else s.admission_rate)
            ys.append(value)
    return xs, ys


def plot_accuracy_vs_admission(report: SplitReport, path: Path, alpha: float = 0.95) -> Path:
    """Admitted accuracy vs admission rate as alpha sweeps (left: admitted set of either ŷ;
    right: accepted answers, ŷ = 1, precision vs acceptance rate); one line per estimator."""
    figure, axes = _figure(12.0, 5.0, 2)
    titles = ("admitted set (either prediction)", "accepted answers (ŷ = correct)")
    labels = (("admission rate", "accuracy of admitted"), ("acceptance rate", "precision"))
    for panel, (ax, title, (xlabel, ylabel)) in enumerate(zip(axes, titles, labels, strict=True)):
        for i, curve in enumerate(report.curves):
            xs, ys = _points(curve.stats, gateway=panel == 1)
            ax.plot(xs, ys, marker=_MARKERS[i % len(_MARKERS)], label=curve.name)
        ax.axhline(alpha, color="grey", linestyle="--", linewidth=1, label=f"α = {alpha}")
        ax.set(xlim=(-0.02, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    figure.suptitle(f"{report.name}: {report.rows} rows, alpha ladder 0.55–0.99")
    figure.savefig(path, dpi=110)
    return path


def plot_families(report: SplitReport, path: Path) -> Path:
    """Per-family admission rate and admitted accuracy of every estimator at FAMILY_ALPHA."""
    figure, (left, right) = _figure(max(8.0, 1.6 * len(report.families) + 4), 5.0, 2)
    positions = np.arange(len(report.families))
    width = 0.8 / max(1, len(report.curves))
    for i, curve in enumerate(report.curves):
        offset = positions + (i - (len(report.curves) - 1) / 2) * width
        admission = [f.estimators[i].admission_rate for f in report.families]
        accuracy = [f.estimators[i].marginal_accuracy or 0.0 for f in report.families]
        left.bar(offset, admission, width, label=curve.name)
        right.bar(offset, accuracy, width, label=curve.name)
    names = [f"{f.family}\n(n={f.rows}, gen {f.generator_accuracy:.0%})" for f in report.families]
    for ax, ylabel in ((left, "admission rate"), (right, "accuracy of admitted (0: none)")):
        ax.set_xticks(positions, names, fontsize="small")
        ax.set(ylim=(0, 1.05), ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
    right.axhline(FAMILY_ALPHA, color="grey", linestyle="--", linewidth=1)
    left.legend(fontsize="small")
    figure.suptitle(f"{report.name}: per family at α = {FAMILY_ALPHA}")
    figure.savefig(path, dpi=110)
    return path


def plot_precision_recall(report: SplitReport, path: Path, alpha: float = 0.95) -> Path:
    """Precision against recall of correct answers (gateway view) for every method on one
    figure: alpha-swept methods as marked lines, score-swept baselines as lines; a star at
    each method's point at ``alpha``."""
    figure, (ax,) = _figure(8.0, 6.0, 1)
    names = [c.name for c in report.curves]
    for curve in report.precision_recall:
        i = names.index(curve.name) if curve.name in names else len(names)
        color = f"C{i % 10}"
        sweep = "α" if curve.sweep == "alpha" else "threshold"
        marker = _MARKERS[i % len(_MARKERS)] if curve.sweep == "alpha" else None
        ax.plot(curve.recall, curve.precision, marker=marker, markersize=3, color=color,
                label=f"{curve.name} (sweeps {sweep})")  # fmt: skip
        if curve.name in names:
            s = report.curve(curve.name).at(alpha)
            if s.precision is not None and s.recall is not None:
                ax.plot([s.recall], [s.precision], marker="*", markersize=14, color=color,
                        markeredgecolor="black", linestyle="none")  # fmt: skip
    ax.axhline(alpha, color="grey", linestyle="--", linewidth=1, label=f"precision {alpha}")
    ax.set(xlim=(-0.02, 1.02), ylim=(0.0, 1.02), xlabel="recall of correct answers",
           ylabel="precision of accepted answers")  # fmt: skip
    ax.set_title(f"{report.name}: precision vs recall (stars: α = {alpha})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    figure.savefig(path, dpi=110)
    return path


def write_plots(report: SplitReport, folder: Path) -> list[Path]:
    """``<split>-accuracy-vs-admission.png``, ``<split>-families.png`` and (when the report has
    curves) ``<split>-precision-recall.png`` in ``folder``."""
    paths = [
        plot_accuracy_vs_admission(report, folder / f"{report.name}-accuracy-vs-admission.png"),
        plot_families(report, folder / f"{report.name}-families.png"),
    ]
    if report.precision_recall:
        paths.append(plot_precision_recall(report, folder / f"{report.name}-precision-recall.png"))
    return paths
