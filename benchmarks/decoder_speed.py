"""Embedded decoder speed against plain ``transformers`` ``generate()`` and the memory bound.

One process, one run, the same GGUF weights (SmolLM2-135M) and the same raw prompt:

- the machine's memory bandwidth (numpy: a 256 MiB copy, read + written, and a sum), and from
  the read (sum) figure the bound on single-stream decoding: every token reads every weight
  once, so tokens/s <= read bandwidth / weight bytes (fp32 and, where asked, bf16);
- single stream, greedy, ``--tokens`` new tokens: ``model.generate`` (the library's loop,
  ``min_new_tokens`` so it never stops early) and our decoder (``LocalTransformersBackend``,
  continuous batching worker), alternating, ``--rounds`` each, median tokens/s;
- our decoder with 8 concurrent streams: aggregate tokens/s, median over the rounds.

With ``--bf16`` the same rows for a bfloat16 copy of the weights (not the serving numerics: the
shipped verifier artifact is calibrated on float32 states; see docs).

Run: ``python -m benchmarks.decoder_speed`` (``--rounds``, ``--tokens``, ``--bf16``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.core.generation import GenerationRequest, SamplingParams
from sdm_router.models.causal_lm import LoadedCausalLM, load_causal_lm

PROMPT = "Count from 1 to 200, separated by commas: 1, 2, 3,"


def bandwidth_gbs() -> tuple[float, float]:
    """(copy GB/s counting bytes read + written, sum GB/s), best of 5."""
    source = np.ones(64 * 1024 * 1024, dtype=np.float32)  # 256 MiB
    target = np.empty_like(source)
    copies, sums = [], []
    for _ in range(5):
        started = time.perf_counter()
        np.copyto(target, source)
        copies.append(2 * source.nbytes / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        float(source.sum())
        sums.append(source.nbytes / (time.perf_counter() - started) / 1e9)
    return max(copies), max(sums)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the distinct parameters (tied embeddings counted once)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if parameter.data_ptr() not in seen:
            seen.add(parameter.data_ptr())
            total += parameter.numel() * parameter.element_size()
    return total


def library_rate(loaded: LoadedCausalLM, tokens: int) -> float:
    """Tokens/s of one greedy ``generate()`` call of exactly ``tokens`` new tokens."""
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        started = time.perf_counter()
        out = loaded.model.generate(
            **ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
            pad_token_id=loaded.tokenizer.eos_token_id,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    return float(out.shape[1] - ids["input_ids"].shape[1]) / elapsed


async def ours_rate(backend: LocalTransformersBackend, tokens: int, streams: int) -> float:
    """Aggregate completion tokens/s of ``streams`` concurrent greedy requests."""
    params = SamplingParams(max_tokens=tokens, temperature=0.0, logprobs=False)
    request = GenerationRequest(None, PROMPT, params)
    started = time.perf_counter()
    results = await asyncio.gather(*(backend.generate(request) for _ in range(streams)))
    elapsed = time.perf_counter() - started
    return sum(result.usage.completion_tokens for result in results) / elapsed


async def measure(
    name: str, loaded: LoadedCausalLM, args: argparse.Namespace, read_gbs: float
) -> dict[str, float]:
    backend = LocalTransformersBackend(loaded=loaded, max_batch_size=8, max_wait_ms=5.0)
    await backend.start()
    runs: dict[str, list[float]] = {"generate()": [], "ours c=1": [], "ours c=8": []}
    steps: list[tuple[str, Callable[[], object]]] = [
        ("generate()", lambda: asyncio.to_thread(library_rate, loaded, args.tokens)),
        ("ours c=1", lambda: ours_rate(backend, args.tokens, 1)),
        ("ours c=8", lambda: ours_rate(backend, args.tokens, 8)),
    ]
    try:
        await ours_rate(backend, 4, 1)  # warm up both paths
        library_rate(loaded, 4)
        for round_ in range(args.rounds):
            for key, step in steps if round_ % 2 == 0 else steps[::-1]:
                runs[key].append(await step())  # type: ignore[misc]
    finally:
        await backend.close()
    medians = {key: statistics.median(values) for key, values in runs.items()}
    size = weight_bytes(loaded.model)
    bound = read_gbs * 1e9 / size
    print(
        f"{name}: weights {size / 1e6:.0f} MB, bound ~{bound:.0f} tokens/s one stream "
        f"(read bandwidth {read_gbs:.1f} GB/s / weight bytes)"
    )
    for key, values in runs.items():
        spread = f"[{min(values):.1f}-{max(values):.1f}]"
        print(
            f"  {key:11} {medians[key]:7.1f} tokens/s median {spread:>14}  "
            f"x{medians[key] / bound:.2f} of bound"
        )
    print(
        f"  ours c=1 / generate(): x{medians['ours c=1'] / medians['generate()']:.2f}; "
        f"ours c=8 / ours c=1: x{medians['ours c=8'] / medians['ours c=1']:.2f}"
    )
    return medians


async def main_async(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    loaded = load_causal_lm(None, device="cpu")
    copy_gbs, sum_gbs = bandwidth_gbs()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), {platform.python_version()}; {args.tokens} new tokens, {args.rounds} rounds "
        f"alternating; numpy copy {copy_gbs:.1f} GB/s (read+write), sum {sum_gbs:.1f} GB/s"
    )
    fp32 = await measure("float32 (serving)", loaded, args, sum_gbs)
    if args.bf16:
        model = copy.deepcopy(loaded.model).to(torch.bfloat16)
        bf16 = dataclasses.replace(loaded, model=model)
        half = await measure("bfloat16 copy", bf16, args, sum_gbs)
        print(f"bf16 / fp32, ours c=1: x{half['ours c=1'] / fp32['ours c=1']:.2f}; "
              f"c=8: x{half['ours c=8'] / fp32['ours c=8']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
