"""Throughput of the embedded SmolLM2-135M backend and latency of its hidden-state encoder.

Prints generated tokens/s for 1, 4 and 8 concurrent greedy requests (each ``--tokens`` long,
``min_tokens``-style: a raw counting prompt that does not stop early) and the encoder's latency
for batches of 1 and 16, via the transformer body (the default) and via ``output_hidden_states``
(the LM-head path, for comparison). Run: ``python -m benchmarks.embedded_backend``.
Figures depend on the machine and on what else runs on it; the header says what was used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

import torch

from service.backends.embedded_model import load_causal_lm
from service.backends.local_transformers import LocalTransformersBackend
from service.core.generation import GenerationRequest, Message, SamplingParams
from service.core.verdict import VerificationInput
from service.verifier.encoder import HiddenStateEncoder

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


def encoder_latency(encoder: HiddenStateEncoder, batch: int, repeats: int) -> float:
    """Median seconds to encode ``batch`` items of ~50-60 tokens each."""
    items = [
        VerificationInput(
            (Message("user", f"What is the capital of country number {i}? Answer briefly."),),
            f"The capital of country number {i} is a city that I do not know very well.",
        )
        for i in range(batch)
    ]
    encoder.encode(items)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(items)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(tokens: int, repeats: int, threads: int | None) -> None:
    """Load once, then measure generation and encoding."""
    loaded = load_causal_lm(None, device="auto", threads=threads)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model={loaded.name} device={loaded.device_label} dtype={loaded.dtype} "
        f"torch_threads={torch.get_num_threads()} cpus={os.cpu_count()} "
        f"python={platform.python_version()} torch={torch.__version__} "
        f"load_avg_1m_at_start={load_avg:.1f}"
    )
    backend = LocalTransformersBackend(loaded=loaded, max_batch_size=8, max_wait_ms=5.0)
    await backend.start()
    try:
        await generation_throughput(backend, 1, 4)  # warm-up
        for concurrency in (1, 4, 8):
            rate, latency = await generation_throughput(backend, concurrency, tokens)
            print(
                f"generate concurrency={concurrency} max_tokens={tokens}: "
                f"{rate:6.1f} tokens/s total, {rate / concurrency:5.1f} tokens/s per stream, "
                f"mean latency {latency:5.2f} s"
            )
    finally:
        await backend.close()
    encoder = HiddenStateEncoder(loaded, batch_size=16)
    fallback = HiddenStateEncoder(loaded, batch_size=16)
    fallback._body = None  # the output_hidden_states path, which also runs the LM head
    for batch in (1, 16):
        body = encoder_latency(encoder, batch, repeats)
        head = encoder_latency(fallback, batch, repeats)
        print(
            f"encode batch={batch:2d}: {body * 1000:7.1f} ms via the body (last_hidden_state), "
            f"{head * 1000:7.1f} ms via output_hidden_states; dimension={encoder.dimension}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens per request")
    parser.add_argument("--repeats", type=int, default=5, help="encoder timing repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    arguments = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main(arguments.tokens, arguments.repeats, arguments.threads))
