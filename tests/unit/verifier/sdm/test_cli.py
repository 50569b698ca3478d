"""The `sdm` command group end to end on a tiny data set (local argparse harness)."""

import argparse
import json
from pathlib import Path

import numpy as np

from sdm_router.verifier.sdm.cli import register


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sdm-router")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _write(path: Path, x: np.ndarray, y: np.ndarray, prefix: str) -> Path:
    with path.open("w") as stream:
        for i, (row, label) in enumerate(zip(x, y, strict=True)):
            stream.write(json.dumps({"id": f"{prefix}{i}", "label": int(label),
                                     "embedding": row.tolist()}) + "\n")  # fmt: skip
    return path


def test_train_score_evaluate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    x = (rng.standard_normal((240, 6)) + 2.5 * y[:, None]).astype(np.float32)
    train = _write(tmp_path / "t.jsonl", x[:120], y[:120], "t")
    cal = _write(tmp_path / "c.jsonl", x[120:], y[120:], "c")
    model = tmp_path / "m.sdmkitmodel"
    code = _run("sdm", "train", "--training", str(train), "--calibration", str(cal),
                "--output", str(model), "--epochs", "2", "--exemplar-dimension", "8",
                "--max-neighbors", "16", "--learning-rate", "1e-3", "--device", "cpu")  # fmt: skip
    assert code == 0
    scored = tmp_path / "s.jsonl"
    assert _run("sdm", "score", "--model", str(model), "--input", str(cal),
                "--output", str(scored), "--nearest-exemplars", "2") == 0  # fmt: skip
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == 120 and rows[0]["id"] == "c0"
    for key in ("prediction", "q", "d0", "d", "qPrime", "sdm", "centroidRegionAlpha",
                "lowerRegionAlpha", "isOOD", "nearestSupportID"):  # fmt: skip
        assert key in rows[0]
    assert len(rows[0]["nearestSupportMatches"]) == 2
    report_path = tmp_path / "r.json"
    assert _run("sdm", "evaluate", "--model", str(model), "--input", str(cal),
                "--output", str(report_path)) == 0  # fmt: skip
    report = json.loads(report_path.read_text())
    assert report["evaluatedRows"] == 120
    accuracy = np.mean(
        [r["prediction"] == int(label) for r, label in zip(rows, y[120:], strict=True)]
    )
    assert report["overall"]["marginal"]["accuracy"] == accuracy
    assert report["centroid"]["rejected"]["count"] <= 120


def test_bad_input_names_the_row(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": 0, "embedding": [1, 2]}\n{"label": 1, "embedding": [1, 2, 3]}\n')
    code = _run("sdm", "train", "--training", str(bad), "--calibration", str(bad),
                "--output", str(tmp_path / "m"))  # fmt: skip
    assert code == 2
    assert "bad.jsonl: row 2: ragged vector" in capsys.readouterr().err
