"""Throughput of the embedded SmolLM2-135M backend and latency of its hidden-state encoder,
with the encoder sharing the model unsafely (before) and through the model's owner (after).

Prints, in one run and one process:

- generated tokens/s for 1 and 8 concurrent greedy requests (each ``--tokens`` long: a raw
  counting prompt that does not stop early), with no encoding going on;
- encode latency (median) for batches of 1 and 16 at the artifact's layer, run directly on the
  calling thread (*before*: how the verifier used the shared weights) and through the backend's
  model thread (*after*: ``owner=backend``), with the backend idle;
- 8 clients that each generate an answer and then encode it on one verifier thread (the
  gateway's pattern), ``--rounds`` times: wall time, tokens/s, encode p50/p99 and the encodes
  that failed. *Before*, the encoder runs the model on the verifier thread at the same time as
  the decoder runs it (the race the ownership change removed: its failures are the HTTP 500s
  users saw, and an encode that does not fail may hold another request's states); *after*, its
  forwards run on the decoding thread between steps.

Run: ``python -m benchmarks.embedded_backend``. Figures depend on the machine and on what else
runs on it; the header says what was used. Compare rows within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import load_causal_lm
from sdm_router.verifier.encoder import HiddenStateEncoder

PROMPTS = [
    "1, 2, 3, 4, 5,",
    "10, 20, 30, 40,",
    "a, b, c, d, e,",
    "2, 4, 6, 8, 10,",
    "100, 99, 98, 97,",
    "Monday, Tuesday, Wednesday,",
    "January, February, March,",
    "5, 10, 15, 20,",
]


def items(batch: int) -> list[VerificationInput]:
    """``batch`` verification inputs of ~50-60 tokens each."""
    return [
        VerificationInput(
            (Message("user", f"What is the capital of country number {i}? Answer briefly."),),
            f"The capital of country number {i} is a city that I do not know very well.",
        )
        for i in range(batch)
    ]


async def generation_throughput(
    backend: LocalTransformersBackend, concurrency: int, tokens: int
) -> tuple[float, float]:
    """(generated tokens per second, mean request latency in s) for ``concurrency`` requests."""
    params = SamplingParams(max_tokens=tokens, temperature=0.0, logprobs=True)
    requests = [
        GenerationRequest(messages=None, prompt=PROMPTS[i % len(PROMPTS)], params=params)
        for i in range(concurrency)
    ]

    async def timed(request: GenerationRequest) -> tuple[int, float]:
        start = time.perf_counter()
        generation = await backend.generate(request)
        return generation.usage.completion_tokens, time.perf_counter() - start

    start = time.perf_counter()
    results = await asyncio.gather(*(timed(request) for request in requests))
    elapsed = time.perf_counter() - start
    generated = sum(count for count, _ in results)
    return generated / elapsed, statistics.mean(latency for _, latency in results)


def encoder_latencies(
    encoders: tuple[HiddenStateEncoder, HiddenStateEncoder], batch: int, repeats: int
) -> tuple[float, float]:
    """Median seconds to encode ``batch`` items with each encoder, runs alternating (ABAB) so
    that a noisy neighbour slows both alike."""
    inputs = items(batch)
    times: tuple[list[float], list[float]] = ([], [])
    for encoder in encoders:
        encoder.encode(inputs)  # warm-up
    for _ in range(repeats):
        for encoder, bucket in zip(encoders, times, strict=True):
            start = time.perf_counter()
            encoder.encode(inputs)
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


@dataclass
class MixedResult:
    """Request throughput and encode latencies of generate-then-verify requests."""

    seconds: float
    tokens: int
    encode_seconds: list[float]
    encode_failures: int


async def mixed_load(
    backend: LocalTransformersBackend, encoder: HiddenStateEncoder, tokens: int, rounds: int
) -> MixedResult:
    """8 clients, each ``rounds`` times: generate ``tokens`` tokens, then encode the answer on
    one verifier thread (as the gateway's verifier batcher does)."""
    latencies: list[float] = []
    failures = 0
    generated = 0
    verifier_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifier")
    loop = asyncio.get_running_loop()
    params = SamplingParams(max_tokens=tokens, temperature=0.0, logprobs=True)

    async def client(number: int) -> None:
        nonlocal failures, generated
        for round_ in range(rounds):
            prompt = PROMPTS[(number + round_) % len(PROMPTS)]
            generation = await backend.generate(
                GenerationRequest(messages=None, prompt=prompt, params=params)
            )
            generated += generation.usage.completion_tokens
            answer = [VerificationInput((Message("user", prompt),), generation.candidates[0].text)]
            start = time.perf_counter()
            try:
                await loop.run_in_executor(verifier_thread, encoder.encode, answer)
            except Exception:  # the unsafe sharing fails this way; counted, not raised
                failures += 1
            else:
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(number) for number in range(8)))
    finally:
        verifier_thread.shutdown()
    return MixedResult(time.perf_counter() - started, generated, latencies, failures)


def describe(label: str, result: MixedResult) -> str:
    """One printed line for a mixed-load run."""
    times = sorted(result.encode_seconds)
    p50 = statistics.median(times) * 1000 if times else float("nan")
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))] * 1000 if times else float("nan")
    return (
        f"generate+verify {label:>15}: {result.seconds:6.1f} s for 8 clients, "
        f"{result.tokens / result.seconds:5.1f} tokens/s, encode p50 {p50:6.1f} ms "
        f"p99 {p99:6.1f} ms, {result.encode_failures} of "
        f"{result.encode_failures + len(times)} encodes failed"
    )


async def main(tokens: int, repeats: int, threads: int | None, layer: int, rounds: int) -> None:
    """Load once, then measure generation, encoding, and both at once, before and after."""
    loaded = load_causal_lm(None, device="auto", threads=threads)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model={loaded.name} device={loaded.device_label} dtype={loaded.dtype} "
        f"torch_threads={torch.get_num_threads()} cpus={os.cpu_count()} "
        f"python={platform.python_version()} torch={torch.__version__} "
        f"encoder_layer={layer} load_avg_1m_at_start={load_avg:.1f}"
    )
    backend = LocalTransformersBackend(loaded=loaded, max_batch_size=8, max_wait_ms=5.0)
    await backend.start()
    shared = HiddenStateEncoder(loaded, layer=layer, batch_size=16)
    owned = HiddenStateEncoder(loaded, layer=layer, batch_size=16, owner=backend)
    try:
        await generation_throughput(backend, 1, 4)  # warm-up
        for concurrency in (1, 8):
            rate, latency = await generation_throughput(backend, concurrency, tokens)
            print(
                f"generate concurrency={concurrency} max_tokens={tokens}: "
                f"{rate:6.1f} tokens/s total, {rate / concurrency:5.1f} tokens/s per stream, "
                f"mean latency {latency:5.2f} s"
            )
        for batch in (1, 16):
            before, after = await asyncio.to_thread(
                encoder_latencies, (shared, owned), batch, repeats
            )
            print(
                f"encode batch={batch:2d} alone: {before * 1000:7.1f} ms on the caller's thread "
                f"(before), {after * 1000:7.1f} ms through the model's owner (after), "
                f"ratio {after / before:4.2f}"
            )
        for label, encoder in (("shared (before)", shared), ("owned (after)", owned)):
            print(describe(label, await mixed_load(backend, encoder, tokens, rounds)))
    finally:
        await backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens per request")
    parser.add_argument("--repeats", type=int, default=5, help="encoder timing repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--layer", type=int, default=20, help="encoder layer (the artifact's)")
    parser.add_argument("--rounds", type=int, default=3, help="generate+verify rounds a client")
    arguments = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(
        main(
            arguments.tokens, arguments.repeats, arguments.threads, arguments.layer,
            arguments.rounds,
        )
    )  # fmt: skip
