"""What the ``last+answer`` pooling costs against ``final+mean``, on CPU, in one process.

Both encoders read the same layer of the embedded SmolLM2-135M over the same answers (one
``encode`` call per round, which batches them as the verifier does), in alternating order per
round so machine noise falls on both. ``last+answer`` runs the same forward pass but
tokenizes three texts per answer (prompt, answer, whole turn) to find the answer's positions;
the preparation column times that step alone (``layout`` against ``format``).

Run: ``python -m benchmarks.encoder_pooling --data var/data-default/splits/test.jsonl``
(``--rows``, ``--rounds``, ``--layer``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import load_causal_lm
from sdm_router.training.records import read_records
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.recipe import ANSWER_POOLING, POOLING


def _per_answer_ms(work: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) / count * 1000


def _each(step: Callable[[VerificationInput], object], items: list[VerificationInput]) -> None:
    for item in items:
        step(item)


def main() -> None:
    """Time both poolings and print the medians with every round."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a records JSONL file")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layer", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    items: list[VerificationInput] = [
        record.verification_input() for record in read_records(args.data)[: args.rows]
    ]
    loaded = load_causal_lm(None, device="cpu")
    encoders = {
        name: HiddenStateEncoder(loaded, layer=args.layer, pooling=name)
        for name in (POOLING, ANSWER_POOLING)
    }
    prepare: dict[str, Callable[[VerificationInput], object]] = {
        POOLING: encoders[POOLING].format,
        ANSWER_POOLING: encoders[ANSWER_POOLING].layout,
    }
    for encoder in encoders.values():
        encoder.encode(items[:8])  # warm up
    encode: dict[str, list[float]] = {name: [] for name in encoders}
    prep: dict[str, list[float]] = {name: [] for name in encoders}
    for round_index in range(args.rounds):
        order = list(encoders) if round_index % 2 == 0 else list(reversed(encoders))
        for name in order:
            encode[name].append(_per_answer_ms(partial(encoders[name].encode, items), len(items)))
            prep[name].append(_per_answer_ms(partial(_each, prepare[name], items), len(items)))
    print(f"{len(items)} answers, layer {args.layer}, {args.rounds} rounds, CPU")
    for name in encoders:
        rounds = ", ".join(f"{value:.1f}" for value in encode[name])
        print(
            f"{name}: encode {statistics.median(encode[name]):.1f} ms/answer ({rounds}); "
            f"preparation {statistics.median(prep[name]):.2f} ms/answer"
        )
    ratio = statistics.median(encode[ANSWER_POOLING]) / statistics.median(encode[POOLING])
    print(f"last+answer / final+mean encode: {ratio:.2f}")


if __name__ == "__main__":
    main()
