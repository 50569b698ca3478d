"""``router build`` / ``router evaluate`` with a toy prompt encoder: labels per tier from the
data rows, one calibrated SDM model per tier, the evaluation counts."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sdm_router.core.generation import Message
from sdm_router.training.records import AnswerRecord
from sdm_router.training.router_build import RouterBuildOptions, build_router, prompt_rows
from sdm_router.training.router_evaluate import evaluate_router
from sdm_router.verifier.prompt_router import PromptRouterModel
from tests.support.verifier_builds import TINY_TRAINING


def answer(item: str, variant: str, label: int, family: str = "f") -> AnswerRecord:
    question = item.replace("/", " ")
    return AnswerRecord.from_json(
        {
            "id": f"{item}#{variant}", "item_id": item, "group_id": item.rsplit("/", 1)[0],
            "family": family, "variant": variant, "question": question, "label": label,
            "messages": [{"role": "user", "content": question}], "response": "x",
            "token_logprobs": None,
        }
    )  # fmt: skip


def test_labels_per_tier_count_retrieval_at_tier_0_and_any_answer_at_tier_1() -> None:
    records = [
        answer("f/a/p0", "greedy", 0), answer("f/a/p0", "retrieval", 1),
        answer("f/b/p0", "greedy", 0), answer("f/b/p0", "sampled-0", 1),
        answer("f/c/p0", "greedy", 0), answer("f/c/p0", "sampled-0", 0),
        answer("f/d/p0", "sampled-0", 1),  # no greedy answer: left out
    ]  # fmt: skip
    with_retrieval = {r.record.item_id: r.labels for r in prompt_rows(records, retrieval=True)}
    assert with_retrieval == {"f/a/p0": (1, 1), "f/b/p0": (0, 1), "f/c/p0": (0, 0)}
    without = {r.record.item_id: r.labels for r in prompt_rows(records, retrieval=False)}
    assert without["f/a/p0"] == (0, 1)
    assert all(r.record.response == "" for r in prompt_rows(records, retrieval=True))


class ToyPromptEncoder:
    """4-d prompt vectors: "easy" prompts near (1, 0, 1, 0), "hard" ones near (0, 1, 0, 1)."""

    identity: ClassVar[dict[str, str]] = {"model": "toy", "layer": "final"}
    representation: ClassVar[dict[str, str]] = {"provider": "test", "fingerprint": "toy"}

    def encode_prompts(self, conversations: Sequence[Sequence[Message]]) -> Any:
        rows = []
        for messages in conversations:
            text = messages[-1].content
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            centre = [1.0, 0.0, 1.0, 0.0] if text.startswith("easy") else [0.0, 1.0, 0.0, 1.0]
            rows.append(np.asarray(centre) + 0.2 * rng.standard_normal(4))
        return np.asarray(rows, dtype=np.float32).reshape(-1, 4)

    def encode_prompt_layers(
        self, conversations: Sequence[Sequence[Message]], layers: Sequence[int | None]
    ) -> dict[int | None, Any]:
        return {layer: self.encode_prompts(conversations) for layer in layers}


def rows(count: int) -> list[AnswerRecord]:
    records = []
    for i in range(count):
        kind = "easy" if i % 2 else "hard"
        for template in range(2):
            item = f"{kind}/{i}/p{template}"
            records.append(answer(item, "greedy", int(kind == "easy")))
            records.append(answer(item, "sampled-0", int(kind == "easy")))
    return records


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("router")
    options = RouterBuildOptions(
        out=folder / "router", splits_dir=folder / "splits", layers=(None,),
        holdout_family=None, holdout_phrasing=None,
        training=replace(TINY_TRAINING, epochs=30),
    )  # fmt: skip
    encoder: Any = ToyPromptEncoder()
    manifest = build_router(options, {None: encoder}, rows(400))
    return folder / "router", folder / "splits", manifest


def test_the_router_has_one_calibrated_model_per_tier(
    built: tuple[Path, Path, dict[str, Any]],
) -> None:
    path, splits, manifest = built
    router = PromptRouterModel.load(path)
    assert len(router.tiers) == 2 and manifest["encoder"]["pooling"] == "last+prompt"
    assert all(m.class_names == ("fails", "answers") for m in router.tiers)
    labels = json.loads((splits / "labels.json").read_text())
    assert labels["easy/1/p0"] == [1, 1] and labels["hard/0/p0"] == [0, 0]
    verdicts = router.score(ToyPromptEncoder().encode_prompts([[Message("user", "hard 0 p9")]]))
    assert [v.prediction for v in verdicts[0]] == [0, 0]


def test_evaluate_skips_the_hopeless_and_keeps_the_answerable(
    built: tuple[Path, Path, dict[str, Any]],
) -> None:
    path, splits, _ = built
    encoder: Any = ToyPromptEncoder()
    report = evaluate_router(PromptRouterModel.load(path), encoder, splits, skip_alpha=0.9)
    test = report["splits"]["test"]["all"]
    assert test["prompts"] > 0
    assert test["false_skips"] == 0  # the toy classes are far apart
    assert test["abstain_early_rate"] > 0.1  # half the prompts are hopeless: some are sure
    assert test["calls_with_router"] < test["calls_without_router"]
    assert test["skipped_tiers"] > 0 and test["wrong_skips"] == 0
    assert 0 < test["wrong_skip_upper_95"] < 0.1  # one-sided Clopper-Pearson, 0 of n
