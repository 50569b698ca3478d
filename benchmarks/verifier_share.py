"""The verifier path's share of a request: encode, score and MicroBatcher wait, on CPU.

The real shipped SDM artifact over SmolLM2-135M hidden states (the encoder loaded on its own,
the way ``verifier.encoder_model`` loads one), driven through ``SDMVerifier.verify`` as the
cascade drives it: one answer per call. Two verifiers in one process, measured in alternating
rounds so that machine noise falls on both:

- *batched*: the configured MicroBatcher (``--max-batch-size``, ``--max-wait-ms``);
- *unbatched*: ``max_batch_size = 1``, ``max_wait_ms = 0`` (every answer its own forward).

For each, at each concurrency (closed loop: C clients, each verifying one answer after
another): answers/s, per-answer latency p50/p99, and where the time goes per answer, from the
verifier's own stage timings: encode and score are per batch, so an answer's share is the
batch's time divided by its size; wait = mean latency - (mean encode + mean score), i.e. the
MicroBatcher's collection wait plus queueing behind earlier batches.

Run: ``python -m benchmarks.verifier_share`` (``--rounds``, ``--per-round``, ``--concurrency``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from sdm_router.config import VerifierSettings, load_settings
from sdm_router.core.generation import Message
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import LoadedCausalLM, load_causal_lm
from sdm_router.verifier.sdm_verifier import SDMVerifier

T = TypeVar("T")


class OwnModel:
    """The encoder's model, run on the verifier's own thread (nothing else shares it)."""

    def __init__(self, loaded: LoadedCausalLM) -> None:
        self._loaded = loaded

    @property
    def loaded(self) -> LoadedCausalLM:
        """The model."""
        return self._loaded

    def run_on_model(self, forward: Callable[[], T]) -> T:
        """Run ``forward`` here (on the verifier thread)."""
        return forward()


@dataclass
class StageClock:
    """Collects the verifier's per-batch stage timings and batch sizes (on its thread: the
    MicroBatcher reports a batch's size before running it, then the verifier its stages)."""

    batches: list[list[float]] = field(default_factory=list)  # [encode s, score s, size]

    def verifier_batch(self, size: int) -> None:
        """A batch of ``size`` starts."""
        self.batches.append([0.0, 0.0, float(size)])

    def verifier_features(self, source: str, reason: str) -> None:
        """Where an answer's features came from (always encoded here)."""

    def stage(self, stage: str, seconds: float) -> None:
        """The running batch's encode or score time."""
        if stage in ("encode", "score") and self.batches:
            self.batches[-1][0 if stage == "encode" else 1] = seconds


def answers(count: int) -> list[VerificationInput]:
    """Short question/answer pairs like the suites' (about 40-60 tokens each)."""
    questions = [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("What is 7 plus 5?", "7 plus 5 is 12."),
        ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
        ("How many letters are in the word 'garden'?", "The word 'garden' has 6 letters."),
        ("Which day comes 3 days after Monday?", "3 days after Monday is Thursday."),
    ]
    return [
        VerificationInput(
            (Message("user", questions[i % len(questions)][0] + f" (#{i})"),),
            questions[i % len(questions)][1],
        )
        for i in range(count)
    ]


@dataclass
class Side:
    """One verifier configuration and what it measured."""

    name: str
    verifier: SDMVerifier
    clock: StageClock
    latencies: dict[int, list[float]] = field(default_factory=dict)
    wall: dict[int, float] = field(default_factory=dict)
    done: dict[int, int] = field(default_factory=dict)
    shares: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # encode, score


async def run_round(side: Side, concurrency: int, per_client: int) -> None:
    """``concurrency`` clients, each verifying ``per_client`` answers back to back."""
    items = answers(concurrency * per_client)
    first_batch = len(side.clock.batches)
    latencies: list[float] = []

    async def client(offset: int) -> None:
        for k in range(per_client):
            item = items[offset * per_client + k]
            started = time.perf_counter()
            await side.verifier.verify([item])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    side.wall[concurrency] = side.wall.get(concurrency, 0.0) + time.perf_counter() - started
    side.done[concurrency] = side.done.get(concurrency, 0) + len(latencies)
    side.latencies.setdefault(concurrency, []).extend(latencies)
    shares = side.shares.setdefault(concurrency, [])
    for encode, score, size in side.clock.batches[first_batch:]:
        shares.extend([(encode / size, score / size)] * int(size))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_side(name: str, settings: VerifierSettings, loaded: LoadedCausalLM) -> Side:
    """A started-later verifier with its own stage clock."""
    clock = StageClock()
    return Side(name, SDMVerifier(settings, OwnModel(loaded), clock), clock)


async def main_async(args: argparse.Namespace) -> None:
    """Measure both sides in alternating rounds and print the table."""
    base = load_settings(args.config).verifier
    loaded = load_causal_lm(None, device="cpu")
    batched = base.model_copy(
        update={"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms}
    )
    single = base.model_copy(update={"max_batch_size": 1, "max_wait_ms": 0.0})
    sides = [make_side("batched", batched, loaded), make_side("unbatched", single, loaded)]
    for side in sides:
        await side.verifier.start()
    try:
        for side in sides:  # warm up
            await run_round(side, 4, 2)
            for record in (side.latencies, side.wall, side.done, side.shares):
                record.clear()
        for concurrency in args.concurrency:
            for round_number in range(args.rounds):
                order = sides if round_number % 2 == 0 else sides[::-1]  # ABBA
                for side in order:
                    await run_round(side, concurrency, max(1, args.per_round // concurrency))
    finally:
        for side in sides:
            await side.verifier.close()
    print_table(args, sides)


def print_table(args: argparse.Namespace, sides: list[Side]) -> None:
    """One row per side and concurrency, then the ratios."""
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {platform.python_version()}; artifact "
        f"{Path(load_settings(args.config).verifier.artifact or 'none').name}; batched = "
        f"max_batch_size "
        f"{args.max_batch_size}, max_wait_ms {args.max_wait_ms}; unbatched = 1, 0"
    )
    header = (
        "side       conc   n | answers/s | p50 ms  p99 ms | per answer: encode  score   wait ms"
    )
    print(header)
    print("-" * len(header))
    for concurrency in args.concurrency:
        for side in sides:
            latencies = side.latencies[concurrency]
            shares = side.shares[concurrency]
            encode = statistics.fmean(e for e, _ in shares) * 1000
            score = statistics.fmean(s for _, s in shares) * 1000
            p50 = percentile(latencies, 0.5) * 1000
            mean = statistics.fmean(latencies) * 1000
            print(
                f"{side.name:<10} {concurrency:>4} {side.done[concurrency]:>4} | "
                f"{side.done[concurrency] / side.wall[concurrency]:>9.1f} | "
                f"{p50:>6.1f} {percentile(latencies, 0.99) * 1000:>7.1f} | "
                f"{encode:>19.1f} {score:>6.2f} {mean - encode - score:>9.1f}"
            )
    for concurrency in args.concurrency:
        batched, single = sides
        throughput = (batched.done[concurrency] / batched.wall[concurrency]) / (
            single.done[concurrency] / single.wall[concurrency]
        )
        added = (
            percentile(batched.latencies[concurrency], 0.5)
            - percentile(single.latencies[concurrency], 0.5)
        ) * 1000
        print(
            f"c={concurrency}: batched/unbatched throughput x{throughput:.2f}; "
            f"p50 latency {added:+.1f} ms (configured wait {args.max_wait_ms:g} ms)"
        )


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="gateway config (embedded)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per level")
    parser.add_argument("--per-round", type=int, default=48, help="answers per round and side")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
