"""`verifier evaluate`: metric functions on hand-made arrays, baselines, writers, the command."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdm_router.training.records import AnswerRecord, write_records
from sdm_router.training.report.estimators import ESTIMATORS, ScoredSplit, build_selections
from sdm_router.training.report.markdown import render_report
from sdm_router.training.report.metrics import (
    ALPHA_LADDER,
    FAILS,
    MEETS,
    REJECTS_ALL,
    admission_stats,
    admitted_at,
    conformal_quantile,
    conformal_singletons,
    fit_logprob_threshold,
    softmax,
    true_class_nonconformity,
)
from sdm_router.training.report.plots import write_plots
from sdm_router.training.report.results import check_acceptance, evaluate_split

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- admission metrics -------------------------------------------------------------------------

PREDICTIONS = np.array([1, 1, 0, 0, 1, 0])
LABELS = np.array([1, 0, 0, 1, 1, 0])
ADMITTED = np.array([True, True, True, False, True, False])


def test_admission_stats_both_views_by_hand() -> None:
    s = admission_stats(ADMITTED, PREDICTIONS, LABELS, alpha=0.6)
    # admitted rows 0,1,2,4; correct (ŷ = y) are 0,2,4
    assert (s.rows, s.admitted) == (6, 4)
    assert s.admission_rate == pytest.approx(4 / 6)
    assert s.marginal_accuracy == pytest.approx(3 / 4)
    # by true y: y=0 -> rows 1,2 (row 2 right); y=1 -> rows 0,4 (both right)
    assert s.class_counts == (2, 2)
    assert s.class_accuracy == (0.5, 1.0)
    # by ŷ: ŷ=0 -> row 2 (right); ŷ=1 -> rows 0,1,4 (0 and 4 right)
    assert s.prediction_counts == (1, 3)
    expected: tuple[object, ...] = (1.0, pytest.approx(2 / 3))  # object: to mypy, approx != float
    assert s.prediction_accuracy == expected
    assert s.min_class_accuracy == 0.5
    assert s.min_prediction_accuracy == pytest.approx(2 / 3)
    assert s.verdict == FAILS
    # gateway: accepted = admitted ∧ ŷ=1 = rows 0,1,4; truly correct 0,4; all correct 0,3,4
    assert (s.accepted, s.acceptance_rate) == (3, 0.5)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.gateway_verdict == MEETS  # 2/3 ≥ 0.6


def test_nothing_admitted_rejects_all() -> None:
    s = admission_stats(np.zeros(6, bool), PREDICTIONS, LABELS, alpha=0.95)
    assert (s.admitted, s.admission_rate, s.accepted) == (0, 0.0, 0)
    assert s.marginal_accuracy is None and s.precision is None
    assert s.class_accuracy == (None, None) and s.prediction_accuracy == (None, None)
    assert s.min_class_accuracy is None
    assert s.verdict == REJECTS_ALL and s.gateway_verdict == REJECTS_ALL
    assert s.recall == 0.0  # three correct answers exist, none accepted


def test_meets_alpha_with_one_empty_class_and_exact_boundary() -> None:
    # 20 admitted rows, all y=1, ŷ=1 on 19 of them and ŷ=0 on one: the ŷ=0 cell is 0/1.
    labels = np.ones(20, np.int64)
    predictions = np.ones(20, np.int64)
    predictions[0] = 0
    s = admission_stats(np.ones(20, bool), predictions, labels, alpha=0.95)
    assert s.class_accuracy == (None, 0.95)
    assert s.prediction_accuracy == (0.0, 1.0)
    assert s.verdict == FAILS
    # without the wrong-class prediction: 19/20 = 0.95 by true class meets 0.95 exactly
    predictions[0] = 1
    labels[0] = 0
    s = admission_stats(np.ones(20, bool), predictions, labels, alpha=0.95)
    assert s.class_accuracy == (0.0, 1.0)
    assert s.verdict == FAILS  # the y=0 cell (one row, predicted 1) is 0
    mask = np.arange(20) > 0
    s = admission_stats(mask, predictions, labels, alpha=0.95)
    assert (s.admitted, s.verdict, s.class_accuracy) == (19, MEETS, (None, 1.0))
    assert s.precision == 1.0 and s.recall == 1.0


def test_precision_at_exact_alpha_meets() -> None:
    labels = np.array([1] * 19 + [0])
    s = admission_stats(np.ones(20, bool), np.ones(20, np.int64), labels, alpha=0.95)
    assert s.precision == 0.95 and s.gateway_verdict == MEETS


def test_admitted_at_is_cumulative_and_ladder_is_clean() -> None:
    assigned = np.array([0.95, 0.9, 0.0, 0.99, 0.949])
    assert admitted_at(assigned, 0.95).tolist() == [True, False, False, True, False]
    assert admitted_at(assigned, 0.55 + 0.05 * 8).tolist() == [True, False, False, True, False]
    assert ALPHA_LADDER == (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[0.0, math.log(3.0)], [1000.0, 1000.0]]))
    assert p.tolist() == [pytest.approx([0.25, 0.75]), [0.5, 0.5]]


# --- baselines ---------------------------------------------------------------------------------


def test_logprob_threshold_smallest_reaching_alpha() -> None:
    scores = np.array([-0.1, -0.2, -0.3, -0.4, -0.5, np.nan])
    correct = np.array([True, True, False, True, False, True])
    # descending precision: 1/1, 2/2, 2/3, 3/4, 3/5 (the NaN row is never accepted)
    assert fit_logprob_threshold(scores, correct, 0.7) == -0.4
    assert fit_logprob_threshold(scores, correct, 0.8) == -0.2
    assert fit_logprob_threshold(scores, correct, 0.6) == -0.5
    # inverted labels: 0/1, 0/2, 1/3, 1/4, 2/5 — a threshold admits everything above it
    assert fit_logprob_threshold(scores, ~correct, 0.55) == math.inf
    assert fit_logprob_threshold(scores, np.zeros(6, bool), 0.55) == math.inf
    assert fit_logprob_threshold(np.array([np.nan]), np.array([True]), 0.55) == math.inf


def test_logprob_threshold_keeps_ties_together() -> None:
    scores = np.array([-1.0, -1.0, -2.0])
    correct = np.array([True, False, True])
    # t = -1 admits both tied rows (1/2); t = -2 admits all (2/3)
    assert fit_logprob_threshold(scores, correct, 0.6) == -2.0
    assert fit_logprob_threshold(scores, correct, 0.7) == math.inf


def test_conformal_quantile_rank() -> None:
    scores = np.arange(1, 20) / 20  # 0.05 … 0.95, n = 19
    assert conformal_quantile(scores, 0.05) == pytest.approx(0.95)  # ⌈20·0.95⌉ = 19
    assert conformal_quantile(scores, 0.10) == pytest.approx(0.90)  # ⌈20·0.90⌉ = 18
    assert conformal_quantile(scores, 0.12) == pytest.approx(0.90)  # ⌈17.6⌉ = 18
    assert conformal_quantile(scores[:9], 0.05) == math.inf  # ⌈9.5⌉ = 10 > 9
    assert conformal_quantile(np.array([]), 0.1) == math.inf


def test_conformal_singletons() -> None:
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    assert conformal_singletons(p, 0.35).tolist() == [True, False, True, False]  # {} for row 1
    assert conformal_singletons(p, 0.55).tolist() == [True, True, True, False]  # {0,1} for row 3
    assert conformal_singletons(p, math.inf).tolist() == [False] * 4
    assert true_class_nonconformity(p, np.array([0, 1, 1, 0])) == pytest.approx(
        [0.1, 0.6, 0.3, 0.5]
    )


def _split(
    name: str,
    labels: Sequence[int],
    logits: Sequence[Sequence[float]],
    mean_logprob: Sequence[float],
    lower: Sequence[float],
    families: Sequence[str] | None = None,
) -> ScoredSplit:
    z = np.asarray(logits, np.float64)
    n = len(labels)
    return ScoredSplit(
        name=name,
        labels=np.asarray(labels, np.int64),
        families=np.asarray(families or ["capitals"] * n, np.str_),
        mean_logprob=np.asarray(mean_logprob, np.float64),
        prediction=np.argmax(z, axis=1).astype(np.int64),
        z_prime=z,
        centroid_alpha=np.maximum(np.asarray(lower, np.float64), 0.0) + 0.0,
        lower_alpha=np.asarray(lower, np.float64),
        q=np.arange(n, dtype=np.float64),
        d=np.linspace(0, 1, n),
        is_ood=np.arange(n) == 0,
    )


L3 = math.log(3.0)  # softmax of (0, ln 3) is (0.25, 0.75)
L19 = math.log(19.0)  # softmax of (0, ln 19) is (0.05, 0.95)


def test_selections_apply_calibration_thresholds() -> None:
    calibration = _split(
        "calibration",
        labels=[1, 1, 0, 1],
        logits=[[0, L19], [0, L3], [L3, 0], [L3, 0]],
        mean_logprob=[-0.1, -0.2, -0.3, -0.4],
        lower=[0.0] * 4,
    )
    split = _split(
        "test",
        labels=[1, 0, 1],
        logits=[[0, L19], [L3, 0], [0, 0]],
        mean_logprob=[-0.15, -0.35, np.nan],
        lower=[0.95, 0.9, 0.0],
    )
    alphas = (0.7, 0.95)
    names = [s.name for s in build_selections(split, calibration, alphas)]
    assert tuple(names) == ESTIMATORS
    sel = {s.name: s for s in build_selections(split, calibration, alphas)}
    assert sel["sdm-lower"].admitted.tolist() == [[True, True, False], [True, False, False]]
    # softmax max p = 0.95, 0.75, 0.5
    assert sel["softmax"].admitted.tolist() == [[True, True, False], [True, False, False]]
    # calibration precision by mean logprob: 1, 1, 2/3, 3/4 -> t(0.7) = -0.4, t(0.95) = -0.2
    assert sel["mean-logprob"].thresholds == (-0.4, -0.2)
    assert sel["mean-logprob"].admitted.tolist() == [[True, True, False], [True, False, False]]
    assert sel["mean-logprob"].predictions.tolist() == [1, 1, 1]
    # calibration 1 − p_y = 0.05, 0.25, 0.25, 0.75; n = 4: ⌈5·0.7⌉ = 4 -> q̂ = 0.75 (row 1's
    # set is {0, 1} since 1 − 0.25 ≤ 0.75); ⌈5·0.95⌉ = 5 > 4 -> q̂ = inf, no singleton
    expected: tuple[object, ...] = (pytest.approx(0.75), None)  # object: to mypy, approx != float
    assert sel["conformal"].thresholds == expected
    assert sel["conformal"].admitted.tolist() == [[True, False, False], [False, False, False]]


def test_evaluate_split_families_and_acceptance() -> None:
    calibration = _split("calibration", [1, 0], [[0, 1], [1, 0]], [-0.1, -0.9], [0.0, 0.0])
    split = _split(
        "shift",
        labels=[1, 1, 0, 0],
        logits=[[0, L19], [0, L3], [L19, 0], [0, L3]],
        mean_logprob=[-0.1, -0.2, -0.3, -0.4],
        lower=[0.95, 0.0, 0.0, 0.95],
        families=["days", "days", "days", "colors"],
    )
    report = evaluate_split(split, calibration)
    assert (report.rows, report.class_counts) == (4, (2, 2))
    assert report.generator_accuracy == 0.5 and report.verifier_accuracy == 0.75
    assert report.ood_rate == 0.25
    lower = report.curve("sdm-lower").at(0.95)
    assert (lower.admitted, lower.marginal_accuracy, lower.verdict) == (2, 0.5, FAILS)
    assert [f.family for f in report.families] == ["colors", "days"]
    days = report.families[1]
    expected: tuple[object, ...] = (3, pytest.approx(2 / 3))  # object: to mypy, approx != float
    assert (days.rows, days.generator_accuracy) == expected
    assert days.estimators[ESTIMATORS.index("sdm-lower")].admitted == 1
    check = check_acceptance(report)
    assert check.shifted and check.verdict == FAILS and not check.holds
    assert check_acceptance(report, "sdm-lower", 0.99).holds  # nothing at 0.99: rejects all


# --- writers -----------------------------------------------------------------------------------


@pytest.fixture
def report_pair() -> tuple[Any, Any]:
    calibration = _split("calibration", [1, 0], [[0, 1], [1, 0]], [-0.1, -0.9], [0.0, 0.0])
    test = _split(
        "test",
        labels=[1, 0, 0, 1, 1, 0],
        logits=[[0, L19], [0, L19], [L19, 0], [L19, 0], [0, L19], [0, 0]],
        mean_logprob=[-0.1, -0.2, -0.3, -0.4, -0.5, np.nan],
        lower=[0.95, 0.95, 0.95, 0.0, 0.99, 0.0],
        families=["a", "a", "b", "b", "b", "a"],
    )
    report = evaluate_split(test, calibration)
    return report, check_acceptance(report)


def test_markdown_table_holds_hand_computed_numbers(report_pair: tuple[Any, Any]) -> None:
    report, check = report_pair
    text = render_report([report], [check], {"test": ["test-families.png"]}, {"verifier": "v"})
    # sdm-lower at 0.95 admits rows 0,1,2,4 (ADMITTED above): 66.7%, acc 0.750, min 0.500/0.667
    row = "| 0.95 | sdm-lower | 66.7% | 4 | 0.750 | 0.500 | 0.667 | fails |"
    assert row in text
    assert "| 0.99 | sdm-lower | 16.7% | 1 | 1.000 | 1.000 | 1.000 | meets α |" in text
    assert "| 0.95 | sdm-lower | 50.0% | 3 | 0.667 | 0.667 | fails |" in text  # gateway view
    assert "| test | sdm-lower | 0.95 | fails | 66.7% | **NO** |" in text
    assert "![test-families.png](test-families.png)" in text
    assert "- verifier: v" in text


def test_write_report_files(tmp_path: Path, report_pair: tuple[Any, Any]) -> None:
    from sdm_router.training.evaluation import write_report

    report, check = report_pair
    written = write_report(tmp_path / "out", [report], [check], {"verifier": "v"})
    names = sorted(p.name for p in written)
    assert names == [
        "report.json",
        "report.md",
        "test-accuracy-vs-admission.png",
        "test-families.png",
        "test-precision-recall.png",
    ]
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    cell = document["splits"]["test"]["estimators"]["sdm-lower"]["perAlpha"][8]
    assert (cell["alpha"], cell["admitted"], cell["verdict"]) == (0.95, 4, FAILS)
    assert cell["byTrueClass"] == {"count": [2, 2], "accuracy": [0.5, 1.0]}
    assert cell["gateway"]["precision"] == pytest.approx(2 / 3)
    assert document["acceptance"][0]["holds"] is False


def test_plots_for_a_split_without_admissions(tmp_path: Path) -> None:
    calibration = _split("calibration", [1, 0], [[0, 1], [1, 0]], [-0.1, -0.9], [0.0, 0.0])
    split = _split("shift", [1, 0], [[0, 0], [0, 0]], [np.nan, np.nan], [0.0, 0.0])
    report = evaluate_split(split, calibration)
    assert all(s.admitted == 0 for c in report.curves for s in c.stats)
    assert check_acceptance(report).holds
    for path in write_plots(report, tmp_path):
        assert path.read_bytes()[:8] == PNG_MAGIC


# --- the command's input handling --------------------------------------------------------------


def _record(i: int, label: int, logprobs: list[list[Any]] | None, family: str = "capitals") -> Any:
    return AnswerRecord.from_json(
        {
            "id": f"q{i}#greedy",
            "item_id": f"q{i}",
            "family": family,
            "variant": "greedy",
            "question": f"question {i}?",
            "messages": [{"role": "user", "content": f"question {i}?"}],
            "response": f"{'right' if label else 'wrong'} answer {i}",
            "token_logprobs": logprobs,
            "label": label,
        }
    )


def test_mean_token_logprobs_and_cache_dir() -> None:
    from sdm_router.training.evaluation import cache_dir, mean_token_logprobs

    records = [
        _record(0, 1, [["a", -1.0], ["b", -3.0]]),
        _record(1, 0, None),
        _record(2, 0, []),
    ]
    values = mean_token_logprobs(records)
    assert values[0] == pytest.approx(-2.0) and np.isnan(values[1:]).all()
    assert cache_dir(Path("/d/splits/test.jsonl")) == Path("/d/cache")
    assert cache_dir(Path("/d/test.jsonl")) == Path("/d/cache")


def _args(tmp_path: Path, data: list[Path], **extra: Any) -> argparse.Namespace:
    return argparse.Namespace(
        verifier=tmp_path / "missing.sdmkitmodel",
        data=data,
        calibration=extra.get("calibration"),
        report=tmp_path / "report",
        encoder="embedded",
        device="cpu",
    )


def test_command_refuses_missing_and_malformed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdm_router.training.evaluation import evaluate_command

    test = tmp_path / "test.jsonl"
    write_records(test, [_record(0, 1, None)])
    assert evaluate_command(_args(tmp_path, [test])) == 2
    assert "missing.sdmkitmodel: no such verifier artifact" in capsys.readouterr().err
    (tmp_path / "missing.sdmkitmodel").write_text("not a package")
    assert evaluate_command(_args(tmp_path, [test])) == 2  # no calibration.jsonl beside it
    assert f"{tmp_path / 'calibration.jsonl'}: no such data file" in capsys.readouterr().err
    bad = tmp_path / "calibration.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert evaluate_command(_args(tmp_path, [test])) == 2
    assert f"{bad}:1: malformed record" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert evaluate_command(_args(tmp_path, [test], calibration=empty)) == 2
    assert f"{empty}: holds no records" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


class _FakeEncoder:
    """Hidden vectors that separate right from wrong answers, keyed by the answer's number."""

    fingerprint = "fake:1"

    def encode(self, items: Sequence[Any]) -> np.ndarray[Any, Any]:
        rows = []
        for item in items:
            number = int(item.response.split()[-1])
            centre = 1.0 if item.response.startswith("right") else -1.0
            rows.append(np.random.default_rng(number).normal(0.0, 0.6, 3) + centre)
        return np.asarray(rows, np.float32)


@pytest.mark.slow
def test_command_end_to_end_with_a_tiny_verifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdm_router.training.evaluation import evaluate_command
    from sdm_router.verifier.encoder import HiddenStateEncoder
    from sdm_router.verifier.features import compose_features
    from sdm_router.verifier.sdm import TrainingConfig, train_model

    rng = np.random.default_rng(0)
    splits = {
        "train": (0, 120, "capitals"),
        "calibration": (120, 240, "capitals"),
        "test": (240, 300, "capitals"),
        "shift": (300, 330, "weekdays"),
    }
    folder = tmp_path / "data" / "splits"
    folder.mkdir(parents=True)
    records = {}
    for name, (lo, hi, family) in splits.items():
        labels = (rng.random(hi - lo) < 0.6).astype(int)
        records[name] = [
            _record(i, int(y), [["t", float(-rng.random())]], family)
            for i, y in zip(range(lo, hi), labels, strict=True)
        ]
        write_records(folder / f"{name}.jsonl", records[name])
    encoder = _FakeEncoder()

    def features(rows: list[AnswerRecord]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        items = [r.verification_input() for r in rows]
        return compose_features(encoder.encode(items), items), np.array([r.label for r in rows])

    config = TrainingConfig(exemplar_dimension=8, epochs=5, max_neighbors=32, device="cpu")
    model = train_model(
        *features(records["train"]),
        *features(records["calibration"]),
        config,
        representation={"provider": "test", "fingerprint": "fake:1"},
    )
    model.save(tmp_path / "v.sdmkitmodel")
    monkeypatch.setattr(HiddenStateEncoder, "from_local", lambda *a, **k: encoder)
    args = _args(tmp_path, [folder / "test.jsonl", folder / "shift.jsonl"])
    args.verifier = tmp_path / "v.sdmkitmodel"
    assert evaluate_command(args) == 0
    out = capsys.readouterr().out
    assert "test (60 rows) at α = 0.95:" in out and "shift (30 rows) at α = 0.95:" in out
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == [
        "report.json",
        "report.md",
        "shift-accuracy-vs-admission.png",
        "shift-families.png",
        "shift-precision-recall.png",
        "test-accuracy-vs-admission.png",
        "test-families.png",
        "test-precision-recall.png",
    ]
    document = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(document["splits"]) == {"test", "shift"}
    assert document["splits"]["shift"]["families"]["weekdays"]["rows"] == 30
    assert list(document["splits"]["test"]["estimators"]) == list(ESTIMATORS)
    assert (tmp_path / "data" / "cache").is_dir()  # DATA/cache, shared with `verifier build`
