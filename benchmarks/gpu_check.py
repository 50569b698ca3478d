"""One short check of the CUDA paths, writing its figures to ``benchmarks/results/``.

Runs on a machine with a CUDA device (refuses without one) and prints, then writes to
``benchmarks/results/gpu_check.txt`` (``--out``):

1. **decoder**: the embedded SmolLM2-135M on CUDA (bfloat16, the CUDA default numerics) through
   ``LocalTransformersBackend``: single-stream and 8-stream tokens/s, against ``generate()``;
2. **encoder**: ``HiddenStateEncoder`` at the shipped recipe (layer 16, ``last+answer``) on
   CUDA: latency of batches of 1 and 16, and the recorded states of (1) against it (max
   relative difference: the no-second-forward path on CUDA);
3. **exemplar index**: exact squared-L2 top-k of 32 queries over 20,000 × 1,000 support rows,
   with torch on CUDA (``torch.cdist`` + ``topk``) against numpy on the CPU: agreement of the
   neighbour sets and the timings. The SDM estimator's own index is faiss; GPU machines
   without faiss measure this torch path (the report says which ran);
4. **SDM scoring and training**: when faiss imports, ``SDMModel`` scores the shipped artifact
   on CUDA and on CPU (agreement and timings) and ``train_model`` trains a small synthetic
   model on CUDA; without faiss these lines say so.

Run: ``python -m benchmarks.gpu_check`` (about two minutes on an H100). The GPU tests
(``-m gpu``) skip without CUDA.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdm_router.backends.local_transformers import LocalTransformersBackend
from sdm_router.config import EMBEDDED_CONFIG
from sdm_router.core.generation import GenerationRequest, Message, SamplingParams
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import load_causal_lm
from sdm_router.verifier.encoder import HiddenStateEncoder

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.txt"
SHIPPED = (EMBEDDED_CONFIG.parent / "../artifacts/smollm2-135m.sdmkitmodel").resolve()
PROMPT = "Count from 1 to 200, separated by commas: 1, 2, 3,"
LINES: list[str] = []


def say(line: str) -> None:
    """Print a figure and keep it for the results file."""
    print(line, flush=True)
    LINES.append(line)


def timed(function: Callable[[], Any], repeats: int = 5) -> float:
    """Median seconds of ``function`` (CUDA synchronized), after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def decoder_and_encoder(tokens: int) -> None:
    loaded = load_causal_lm(None, device="cuda")
    say(f"1. decoder on {loaded.device_label}, {loaded.dtype}, {tokens} new tokens")
    backend = LocalTransformersBackend(loaded=loaded, max_batch_size=8, max_wait_ms=5.0)
    await backend.start()
    try:
        params = SamplingParams(max_tokens=tokens, temperature=0.0, logprobs=False)
        request = GenerationRequest(None, PROMPT, params)
        for streams in (1, 8):
            rates = []
            for _ in range(3):
                started = time.perf_counter()
                results = await asyncio.gather(*(backend.generate(request) for _ in range(streams)))
                elapsed = time.perf_counter() - started
                rates.append(sum(r.usage.completion_tokens for r in results) / elapsed)
            say(f"   ours c={streams}: {statistics.median(rates):.1f} tokens/s (median of 3)")
        ids = loaded.tokenizer(PROMPT, return_tensors="pt").to(loaded.device)

        def library() -> None:
            with torch.inference_mode():
                loaded.model.generate(
                    **ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                    pad_token_id=loaded.tokenizer.eos_token_id,
                )  # fmt: skip

        say(f"   generate(): {tokens / timed(library, 3):.1f} tokens/s (median of 3)")

        encoder = HiddenStateEncoder(
            loaded, layer=16, pooling="last+answer", owner=backend, batch_size=16
        )
        backend.record_layers("gpu-check", encoder.recordable_layers)
        questions = [f"What is the capital of {c}?" for c in ("France", "Japan", "Peru", "Chad")]
        greedy = SamplingParams(max_tokens=24, temperature=0.0)
        requests = [GenerationRequest((Message("user", q),), None, greedy) for q in questions]
        generations = await asyncio.gather(*(backend.generate(r) for r in requests))
        items = [
            VerificationInput(
                r.messages or (), g.candidates[0].text, None, g.candidates[0].recorded
            )
            for r, g in zip(requests, generations, strict=True)
        ]
        encoded = encoder.encode(items)
        worst = 0.0
        for item, expected in zip(items, encoded, strict=True):
            vector, reason = encoder.recorded_vector(item)
            if vector is None:
                say(f"   recorded states unusable for {item.response!r}: {reason}")
                continue
            worst = max(worst, float(np.abs(vector - expected).max() / np.abs(expected).max()))
        say(
            "2. encoder on CUDA, layer 16 last+answer: recorded vs encoded max rel diff "
            f"{worst:.2e}"
        )
        batch16 = (items * 4)[:16]
        say(f"   encode batch 1: {timed(lambda: encoder.encode(items[:1])) * 1e3:.1f} ms; "
            f"batch 16: {timed(lambda: encoder.encode(batch16)) * 1e3:.1f} ms")  # fmt: skip
    finally:
        await backend.close()


def exemplar_index() -> None:
    rng = np.random.default_rng(0)
    support = rng.standard_normal((20_000, 1_000), dtype=np.float32)
    queries = rng.standard_normal((32, 1_000), dtype=np.float32)
    k = 64
    gpu_support = torch.from_numpy(support).cuda()
    gpu_queries = torch.from_numpy(queries).cuda()

    def torch_search() -> Any:
        distances = torch.cdist(gpu_queries, gpu_support).square()
        return distances.topk(k, largest=False)

    def numpy_search() -> Any:
        distances = (
            (queries**2).sum(1)[:, None] - 2 * queries @ support.T + (support**2).sum(1)[None]
        )
        return np.argpartition(distances, k, axis=1)[:, :k]

    gpu_seconds, cpu_seconds = timed(torch_search), timed(numpy_search, 3)
    found = torch_search().indices.cpu().numpy()
    expected = numpy_search()
    agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, expected, strict=True)])
    say(f"3. exemplar index (torch path), 32 queries x 20000 x 1000, k={k}: cuda "
        f"{gpu_seconds * 1e3:.2f} ms, numpy cpu {cpu_seconds * 1e3:.1f} ms, "
        f"neighbour sets agree {agree:.1%}")  # fmt: skip


def sdm_paths() -> None:
    try:
        import faiss  # noqa: F401
    except ImportError:
        say("4. SDM scoring and training: skipped, faiss does not import on this machine "
            "(the estimator's index is faiss; line 3 measured the torch path instead)")  # fmt: skip
        return
    from sdm_router.verifier.sdm import SDMModel
    from sdm_router.verifier.sdm.training import TrainingConfig, train_model

    cpu, gpu = SDMModel.load(SHIPPED, device="cpu"), SDMModel.load(SHIPPED, device="cuda")
    features = np.random.default_rng(1).standard_normal(
        (64, cpu.embedding_dimension), dtype=np.float32
    )
    same = np.array_equal(cpu.score(features).prediction, gpu.score(features).prediction)
    on_gpu, on_cpu = timed(lambda: gpu.score(features)), timed(lambda: cpu.score(features))
    say(f"4. SDM scoring, shipped artifact, 64 rows: cuda {on_gpu * 1e3:.1f} ms, "
        f"cpu {on_cpu * 1e3:.1f} ms, predictions equal {same}")  # fmt: skip
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2_000, 64), dtype=np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    config = TrainingConfig(exemplar_dimension=64, epochs=3, device="cuda")
    started = time.perf_counter()
    model = train_model(x[:1_200], y[:1_200], x[1_200:], y[1_200:], config)
    say(
        f"   SDM training on {model.device}: {time.perf_counter() - started:.1f} s "
        "(2000 rows, M=64, 3 epochs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device; none is available here")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    say(f"# python -m benchmarks.gpu_check, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
        f"{platform.python_version()}")  # fmt: skip
    steps: list[tuple[str, Callable[[], None]]] = [
        ("decoder/encoder", lambda: asyncio.run(decoder_and_encoder(args.tokens))),
        ("exemplar index", exemplar_index),
        ("sdm", sdm_paths),
    ]
    for name, step in steps:
        try:
            step()
        except Exception as error:  # one failed path must not hide the others' figures
            say(f"   {name} failed: {type(error).__name__}: {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
