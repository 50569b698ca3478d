"""Why calibration finds no high-reliability region: how far each class falls short.

SDM's region at alpha (docs ../shared/design/SDM.md §3.1) needs, among the calibration rows
with rescaled similarity q' >= t for some t, that for **every true class** c the
floor((1 - alpha) n_c)-th smallest probability given to c is at least alpha: a region asks that
the answers that are truly correct get "correct" with probability >= alpha, and the truly wrong
ones "incorrect", not only that predicted-correct answers are right. This trains one variant
of `verifier ablate` on its first carve (the probe's cache must hold the pool: run the
ablation first) and prints, per alpha, the best t and each class's psi there, then per family
the calibration answers that are correct, how many of them get p(correct) >= 0.9, and how many
sit among wrong exemplars (predicted incorrect with q >= 5), which keep psi(correct) down.

Run: ``python -m benchmarks.region_shortfall --data var/data-v2 --variant
gen.last,gen.answer@16+lp [--min-family-accuracy 0.15]`` (reads no test, shift or phrasing row).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sdm_router.models.causal_lm import load_causal_lm
from sdm_router.training.ablation.command import DEFAULT_LAYERS
from sdm_router.training.ablation.probe import RepresentationProbe, probe_records
from sdm_router.training.ablation.runner import (
    AblationOptions,
    carve,
    development_pool,
    train_variant,
)
from sdm_router.training.ablation.variants import Variant, variant_features
from sdm_router.training.records import ROWS_FILE, read_records
from sdm_router.training.verifier_build import DEFAULT_TRAINING


def best_threshold(
    q_prime: np.ndarray[Any, Any], p_true: np.ndarray[Any, Any], labels: np.ndarray[Any, Any],
    alpha: float,
) -> tuple[float, float, list[float], list[int]]:  # fmt: skip
    """(min psi, t, psi per class, kept rows per class) at the t whose smallest psi is largest."""
    best: tuple[float, float, list[float], list[int]] = (-1.0, 0.0, [], [])
    for t in np.unique(q_prime[np.floor(q_prime) > 0]):
        kept = q_prime >= t
        psis, counts = [], []
        for c in (0, 1):
            values = np.sort(p_true[kept & (labels == c)])
            n = len(values)
            index = min(int(np.floor(round(1 - alpha, 10) * n)), n - 1)
            psis.append(0.0 if n == 0 else float(values[index]))
            counts.append(n)
        if min(psis) > best[0]:
            best = (min(psis), float(t), psis, counts)
    return best


def main() -> None:
    """Train, then print the shortfall."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--variant", default="gen.last,gen.answer@16+lp")
    parser.add_argument("--holdout-family", default="weekdays,countries")
    parser.add_argument("--holdout-phrasings", default="1")
    parser.add_argument("--min-family-accuracy", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    training = replace(DEFAULT_TRAINING, exemplar_dimension=64, shuffles=1, device="cpu")
    options = AblationOptions(
        variants=(args.variant,), holdout_family=args.holdout_family,
        holdout_phrasing=args.holdout_phrasings, training=replace(training, seed=args.seed),
        min_family_accuracy=args.min_family_accuracy,
    )  # fmt: skip
    pool = development_pool(read_records(args.data / ROWS_FILE), options)
    probe = RepresentationProbe(load_causal_lm(None, device="cpu"), DEFAULT_LAYERS.split(","))
    probed = probe_records(pool, probe, args.data / "cache")
    variant = Variant.parse(args.variant).canonical(probe.total_layers)
    x = variant_features(variant, probed, pool)
    labels = np.asarray([record.label for record in pool], dtype=np.int64)
    carved = carve(pool, options.validation_fractions, 0, args.min_family_accuracy)
    model = train_variant(x, labels, [r.id for r in pool], carved, options.training)
    rows = model.contents.calibration_rows or []
    family = {record.id: record.family for record in pool}
    y = np.asarray([row["label"] for row in rows])
    predicted = np.asarray([row["prediction"] for row in rows])
    sdm = np.asarray([row["sdm"] for row in rows])
    q_prime = np.asarray([row["qPrime"] for row in rows])
    q = np.asarray([row["q"] for row in rows])
    p_true = sdm[np.arange(len(rows)), y]
    print(f"variant {variant.name}, data mix >= {args.min_family_accuracy}, seed {args.seed}")
    print(f"regions: {[round(region.alpha, 3) for region in model.contents.regions]}")
    print(
        f"calibration rows {len(rows)}: {int(y.sum())} correct, {int(predicted.sum())} "
        f"predicted correct, {int((y & predicted).sum())} both"
    )
    for alpha in (0.90, 0.95):
        _, t, psis, counts = best_threshold(q_prime, p_true, y, alpha)
        print(
            f"alpha {alpha}: best q' >= {t:.2f}: psi(incorrect) {psis[0]:.3f} over {counts[0]} "
            f"rows, psi(correct) {psis[1]:.3f} over {counts[1]} rows (a region needs both >= "
            f"{alpha})"
        )
    print("family | calibration rows | correct | correct with p(correct) >= 0.9 | "
          "correct, predicted incorrect, q >= 5")  # fmt: skip
    by_family: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_family[family[row["id"]]].append(index)
    for name, indices in sorted(by_family.items()):
        at = np.asarray(indices)
        right = at[y[at] == 1]
        hidden = int(((predicted[right] == 0) & (q[right] >= 5)).sum())
        print(f"{name} | {len(at)} | {len(right)} | {int((sdm[right, 1] >= 0.9).sum())} | {hidden}")


if __name__ == "__main__":
    main()
