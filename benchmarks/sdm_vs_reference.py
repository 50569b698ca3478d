"""Side-by-side benchmark: our SDM estimator vs reexpress-sdm 0.4.8 (prints figures).

Synthetic data: 5k train / 5k calibration / 5k eval rows, D = 384, 2 classes, plus 1k OOD
rows. Both train with the reference's `sdm train` defaults (M = 1000, 20 epochs, K = 2048,
J = 1, pooled shuffle). Run: ``python -m benchmarks.sdm_vs_reference [--rows 5000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sdm_router.verifier.sdm import SDMModel
from sdm_router.verifier.sdm.training import TrainingConfig, train_model


def synthetic(rows: int, dimension: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two classes, each a mixture of 4 Gaussian clusters; OOD rows are far-shifted."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(dimension).astype(np.float32)
    direction *= 3.4 / np.linalg.norm(direction)
    centers = rng.standard_normal((2, 4, dimension)).astype(np.float32) * 0.15
    centers[1] += direction

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        cluster = rng.integers(0, 4, n)
        noise = rng.standard_normal((n, dimension)).astype(np.float32)
        return (centers[labels, cluster] + noise).astype(np.float32), labels.astype(np.int64)

    ood_x, ood_y = draw(1000)
    ood_x = (ood_x * 1.5 + 2.0).astype(np.float32)
    return {
        "train": draw(rows), "calibration": draw(rows), "eval": draw(rows), "ood": (ood_x, ood_y),
    }  # fmt: skip


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def best_of_two(function: Callable[[], Any]) -> tuple[Any, float]:
    """Run twice (the first call pays one-time warm-up) and keep the faster time."""
    first, first_s = timed(function)
    _, second_s = timed(function)
    return first, min(first_s, second_s)


def latencies(score_one: Callable[[np.ndarray], Any], rows: np.ndarray) -> tuple[float, float]:
    for i in range(10):
        score_one(rows[i : i + 1])
    samples = []
    for i in range(rows.shape[0]):
        started = time.perf_counter()
        score_one(rows[i : i + 1])
        samples.append(time.perf_counter() - started)
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def admission(
    alpha: np.ndarray, predictions: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    admitted = alpha >= 0.95
    accuracy = float(np.mean(predictions[admitted] == labels[admitted])) if admitted.any() else 1.0
    return float(np.mean(admitted)), accuracy


def reference_side(data: dict[str, Any], folder: Path, epochs: int) -> dict[str, Any]:
    import reexpress_sdm as reference
    from reexpress_sdm.iterative_training import train_iterations
    from reexpress_sdm.training import TrainingConfig as ReferenceConfig

    (xt, yt), (xc, yc) = data["train"], data["calibration"]
    result, train_s = timed(lambda: train_iterations(
        ReferenceConfig(number_of_classes=2, epochs=epochs), xt, yt, xc, yc,
        backend_options={"device": "cpu"},
    ))  # fmt: skip
    path = folder / "reference.sdmkitmodel"
    reference.write_artifact(path, result.artifact)
    model = reference.SDMModel.load(path, device="cpu")
    xe, ye = data["eval"]
    scores, score_s = best_of_two(lambda: model.score(xe, nearest_exemplars=0))
    p50, p99 = latencies(lambda r: model.score(r, nearest_exemplars=0), xe[:200])
    ood = model.score(data["ood"][0], nearest_exemplars=0)

    def col(rows: Any, name: str) -> np.ndarray:
        return np.asarray([getattr(s, name) for s in rows])

    return {
        "path": path, "train_s": train_s, "score_s": score_s, "p50": p50, "p99": p99,
        "prediction": col(scores, "prediction"), "labels": ye,
        "centroid": col(scores, "centroid_region_alpha"),
        "lower": col(scores, "lower_region_alpha"), "q": col(scores, "q"), "d": col(scores, "d"),
        "ood_rejected": float(np.mean(col(ood, "centroid_region_alpha") == 0.0)),
        "best_epoch": result.best_epoch,
    }  # fmt: skip


def our_side(data: dict[str, Any], folder: Path, epochs: int) -> dict[str, Any]:
    (xt, yt), (xc, yc) = data["train"], data["calibration"]
    config = TrainingConfig(epochs=epochs, device="cpu")
    model, train_s = timed(lambda: train_model(xt, yt, xc, yc, config))
    path = model.save(folder / "ours.sdmkitmodel")
    model = SDMModel.load(path, device="cpu")
    xe, ye = data["eval"]
    scores, score_s = best_of_two(lambda: model.score(xe))
    p50, p99 = latencies(model.score, xe[:200])
    ood = model.score(data["ood"][0])
    return {
        "path": path, "train_s": train_s, "score_s": score_s, "p50": p50, "p99": p99,
        "prediction": scores.prediction, "labels": ye, "centroid": scores.centroid_region_alpha,
        "lower": scores.lower_region_alpha, "q": scores.q,
        "ood_rejected": float(np.mean(ood.centroid_region_alpha == 0.0)),
        "best_epoch": model.contents.metadata["trainingRun"]["bestEpoch"] if model.contents.metadata else 0,  # noqa: E501
    }  # fmt: skip


def same_weights_check(data: dict[str, Any], reference_path: Path, ref: dict[str, Any]) -> None:
    """Our scorer on the reference-trained artifact: exemplar-space only, and screened (default)."""
    xe = data["eval"][0]
    for use_subspace in (False, None):
        model = SDMModel.load(reference_path, device="cpu", use_subspace=use_subspace)
        scores, score_s = best_of_two(partial(model.score, xe))
        p50, p99 = latencies(model.score, xe[:200])
        q_equal = float(np.mean(scores.q == ref["q"]))
        d_equal = float(np.mean(np.abs(scores.d - ref["d"]) <= 1e-6))
        centroid_equal = float(np.mean(scores.centroid_region_alpha == ref["centroid"]))
        lower_equal = float(np.mean(scores.lower_region_alpha == ref["lower"]))
        print(
            f"our scorer on the reference artifact (use_subspace={use_subspace}, "
            f"screened={model.uses_subspace}): "
            f"q equal {q_equal:.4f}, d equal {d_equal:.4f}, "
            f"centroid alpha equal {centroid_equal:.4f}, "
            f"lower alpha equal {lower_equal:.4f}; score 5k {score_s:.3f} s, "
            f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
        )


def report(ref: dict[str, Any], ours: dict[str, Any]) -> None:
    rows = [
        ("train wall (s)", ref["train_s"], ours["train_s"]),
        ("score 5k rows (s)", ref["score_s"], ours["score_s"]),
        ("single-row p50 (ms)", ref["p50"], ours["p50"]),
        ("single-row p99 (ms)", ref["p99"], ours["p99"]),
    ]
    print(f"{'measure':<28}{'reexpress-sdm':>15}{'sdm-router':>12}{'speed-up':>10}")
    for name, a, b in rows:
        print(f"{name:<28}{a:>15.3f}{b:>12.3f}{a / b:>9.1f}x")
    for estimator in ("centroid", "lower"):
        for side_name, side in (("reexpress-sdm", ref), ("sdm-router", ours)):
            share, accuracy = admission(side[estimator], side["prediction"], side["labels"])
            print(f"{estimator:>8} alpha>=0.95  {side_name:<14} admission {share:7.2%}  "
                  f"accuracy {accuracy:.4f}")  # fmt: skip
    for side_name, side in (("reexpress-sdm", ref), ("sdm-router", ours)):
        accuracy = float(np.mean(side["prediction"] == side["labels"]))
        print(
            f"{side_name:<14} overall accuracy {accuracy:.4f}  best epoch {side['best_epoch']}  "
            f"median q {np.median(side['q']):.0f}  OOD rejected {side['ood_rejected']:.2%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="train both sides this many times, alternating, and keep each side's fastest run "
        "(a shared machine's load drifts within minutes)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    data = synthetic(args.rows, args.dimension, seed=7)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        ours_runs, ref_runs = [], []
        for run in range(max(1, args.repeats)):
            run_folder = folder / f"run-{run}"
            run_folder.mkdir()
            ours_runs.append(our_side(data, run_folder, args.epochs))
            print(f"sdm-router trained in {ours_runs[-1]['train_s']:.1f} s", flush=True)
            ref_runs.append(reference_side(data, run_folder, args.epochs))
            print(f"reexpress-sdm trained in {ref_runs[-1]['train_s']:.1f} s", flush=True)
        ours = min(ours_runs, key=lambda run: run["train_s"])
        ref = min(ref_runs, key=lambda run: run["train_s"])
        report(ref, ours)
        same_weights_check(data, ref["path"], ref)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
