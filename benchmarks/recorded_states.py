"""Verification with and without the second forward pass, on the embedded default (CPU).

The real SmolLM2-135M backend and the shipped SDM artifact, the verifier sharing the backend's
weights the way the embedded config wires them (``encoder_backend``), driven the way the
cascade drives them: ``backend.generate`` then ``SDMVerifier.verify`` (the cascade's
``generate`` and ``verify`` stages time exactly these two calls). Two parts, one process:

1. **Verification share** on short verified answers (capital questions, greedy,
   ``--max-tokens`` 16), one request at a time, ``--requests`` rounds alternating *before*
   (the decoder records nothing; the verifier encodes the answer: a second forward) and
   *after* (the decoder records the artifact's layer; the verifier reads it). Per side: median
   generate, median verify, their ratio, and the median end to end (generate + verify).
2. **Fallback share** on a subset of the traffic-like build's questions
   (``data/smollm2-135m-v2-rows.jsonl.gz``: the first ``--per-family`` distinct questions of
   each family, in file order), generated with the embedded route's tier 0 (greedy,
   ``max_tokens`` 40) and tier 1 (best-of-4 at temperature 0.7) in batches of 8: which share
   of the answers the verifier would still encode, by reason.

Run: ``python -m benchmarks.recorded_states`` (``--requests``, ``--per-family``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.config import EMBEDDED_CONFIG, VerifierSettings
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.states import RECORDED
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import load_causal_lm
from sdm_router.verifier.sdm_verifier import SDMVerifier

SHIPPED = (EMBEDDED_CONFIG.parent / "../artifacts/smollm2-135m.sdmkitmodel").resolve()
TRAFFIC = Path(__file__).resolve().parents[1] / "data" / "smollm2-135m-v2-rows.jsonl.gz"
CAPITALS = [
    "France", "Japan", "Italy", "Germany", "Spain", "Canada", "Egypt", "Peru", "Kenya", "Norway",
]  # fmt: skip


class Counts:
    """The verifier's observer: feature sources and reasons."""

    def __init__(self) -> None:
        self.features: Counter[str] = Counter()

    def stage(self, stage: str, seconds: float) -> None:
        """Stages are timed around the calls here."""

    def verifier_batch(self, size: int) -> None:
        """Batch sizes are not reported."""

    def verifier_features(self, source: str, reason: str) -> None:
        """Count one answer's reason."""
        self.features[reason] += 1


def item_of(request: GenerationRequest, text: str, candidate: object) -> VerificationInput:
    """The verification input the cascade builds for a candidate."""
    assert request.messages is not None
    recorded = getattr(candidate, "recorded", None)
    logprobs = getattr(candidate, "token_logprobs", None)
    return VerificationInput(request.messages, text, logprobs, recorded)


async def share(
    backend: LocalTransformersBackend, verifier: SDMVerifier, args: argparse.Namespace
) -> None:
    """Part 1: generate and verify one capital question at a time, before/after alternating."""
    layers = backend.recorded_layers
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    sides: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for round_ in range(args.requests):
        country = CAPITALS[round_ % len(CAPITALS)]
        request = GenerationRequest(
            (Message("user", f"What is the capital of {country}?"),), None, params
        )
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        for side in order:
            backend.record_layers("verifier", layers if side == "after" else frozenset())
            started = time.perf_counter()
            generation = await backend.generate(request)
            generated = time.perf_counter()
            (candidate,) = generation.candidates
            await verifier.verify([item_of(request, candidate.text, candidate)])
            sides[side].append((generated - started, time.perf_counter() - generated))
    backend.record_layers("verifier", layers)
    print(
        f"1. verification share, capital questions, greedy, max_tokens {args.max_tokens}, "
        f"one at a time, {args.requests} requests a side, alternating (medians)"
    )
    print("side     generate ms  verify ms  verify/generate  end to end ms")
    ends = {}
    for side, rows in sides.items():
        generate = statistics.median(g for g, _ in rows)
        verify = statistics.median(v for _, v in rows)
        ends[side] = statistics.median(g + v for g, v in rows)
        ratio = statistics.median(v / g for g, v in rows)
        print(
            f"{side:7} {generate * 1e3:12.1f} {verify * 1e3:10.1f} {ratio:15.1%} "
            f"{ends[side] * 1e3:14.1f}"
        )
    print(f"end to end p50 after/before: x{ends['after'] / ends['before']:.2f}")


def traffic_questions(per_family: int) -> list[tuple[str, tuple[Message, ...]]]:
    """The first ``per_family`` distinct questions of each family of the traffic-like build."""
    taken: Counter[str] = Counter()
    seen: set[str] = set()
    questions = []
    with gzip.open(TRAFFIC, "rt") as rows:
        for line in rows:
            row = json.loads(line)
            if row["variant"] != "greedy" or row["item_id"] in seen:
                continue
            if taken[row["family"]] >= per_family:
                continue
            seen.add(row["item_id"])
            taken[row["family"]] += 1
            messages = tuple(Message(m["role"], m["content"]) for m in row["messages"])
            questions.append((row["family"], messages))
    return questions


async def fallbacks(
    backend: LocalTransformersBackend, verifier: SDMVerifier, args: argparse.Namespace
) -> None:
    """Part 2: which answers of traffic-like questions would still be encoded, and why."""
    assert verifier._encoder is not None
    encoder = verifier._encoder
    questions = traffic_questions(args.per_family)
    tiers = {"tier 0 (greedy)": SamplingParams(max_tokens=40, temperature=0.0)}
    if args.best_of:
        tiers["tier 1 (n=4, t=0.7)"] = SamplingParams(max_tokens=40, temperature=0.7, n=4, seed=7)
    print(
        f"\n2. fallback share on the traffic-like build: {len(questions)} questions "
        f"({args.per_family} per family, {len({f for f, _ in questions})} families), max_tokens 40"
    )
    for name, params in tiers.items():
        reasons: Counter[str] = Counter()
        finish: Counter[str] = Counter()
        for start in range(0, len(questions), 8):
            chunk = questions[start : start + 8]
            requests = [GenerationRequest(messages, None, params) for _, messages in chunk]
            generations = await asyncio.gather(*(backend.generate(r) for r in requests))
            for request, generation in zip(requests, generations, strict=True):
                for candidate in generation.candidates:
                    item = item_of(request, candidate.text, candidate)
                    _, reason = await asyncio.to_thread(encoder.recorded_vector, item)
                    reasons[reason] += 1
                    finish[candidate.finish_reason] += 1
        total = sum(reasons.values())
        encoded = total - reasons[RECORDED]
        detail = ", ".join(f"{r} {c}" for r, c in reasons.most_common() if r != RECORDED)
        print(
            f"{name}: {total} answers ({dict(finish)} finish reasons); recorded "
            f"{reasons[RECORDED]}, encoded {encoded} ({encoded / total:.1%})"
            f"{': ' + detail if detail else ''}"
        )


async def main_async(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    loaded = load_causal_lm(None, device="cpu")
    backend = LocalTransformersBackend(loaded=loaded, max_batch_size=8, max_wait_ms=5.0)
    await backend.start()
    counts = Counts()
    settings = VerifierSettings(
        artifact=SHIPPED, encoder_backend="smollm2-135m", device="cpu", max_wait_ms=2.0
    )
    verifier = SDMVerifier(settings, backend, counts)
    await verifier.start()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), {platform.python_version()}; artifact {SHIPPED.name} "
        f"(recorded layers {sorted(backend.recorded_layers)}), {loaded.dtype}"
    )
    try:
        if args.requests:
            await share(backend, verifier, args)
        if args.per_family:
            await fallbacks(backend, verifier, args)
    finally:
        await verifier.close()
        await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24, help="rounds of part 1 (0: skip)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--per-family", type=int, default=4, help="part 2 (0: skip)")
    parser.add_argument("--best-of", action=argparse.BooleanOptionalAction, default=True)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
