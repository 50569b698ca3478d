"""The ablation's one-pass probe on a tiny random Llama: the encoder's vectors, the generation
pass's states, batching and the cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sdm_router.core.generation import Message
from sdm_router.core.verdict import VerificationInput
from sdm_router.models.causal_lm import LoadedCausalLM
from sdm_router.training.ablation.probe import (
    POOLINGS,
    RepresentationProbe,
    block_key,
    layer_names,
    probe_records,
)
from sdm_router.training.records import AnswerRecord
from sdm_router.verifier.encoder import HiddenStateEncoder
from tests.support.tiny_llama import tiny_llama

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .?:\n[]"
UNK = len(CHARS)
LAYERS = 3


class ChatCharTokenizer:
    """One token per character; a ChatML-like template where "[" opens and "]" closes a turn."""

    pad_token_id = UNK
    eos_token_id = CHARS.index("]")
    chat_template = "[{role}\\n{content}]\\n (toy)"

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        def ids(one: str) -> list[int]:
            return [CHARS.index(c) if c in CHARS else UNK for c in one]

        return {"input_ids": [ids(t) for t in text] if isinstance(text, list) else ids(text)}

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        tokenize: bool = False,
        add_generation_prompt: bool = False,
    ) -> str:
        text = "".join(f"[{m['role']}\n{m['content']}]\n" for m in messages)
        return text + ("[assistant\n" if add_generation_prompt else "")


@pytest.fixture(scope="module")
def loaded() -> LoadedCausalLM:
    model = tiny_llama(
        len(CHARS) + 1, hidden_size=16, intermediate_size=32, layers=LAYERS, heads=2,
        kv_heads=1, positions=256, seed=3,
    )  # fmt: skip
    return LoadedCausalLM(
        "tiny", model, ChatCharTokenizer(), torch.device("cpu"), Path("tiny"), "0" * 64, "test"
    )


def item(question: str, answer: str, system: str | None = None) -> VerificationInput:
    messages = (Message("system", system),) if system else ()
    return VerificationInput((*messages, Message("user", question)), answer)


ITEMS = [
    item("what is two plus two?", "four."),
    item("capital of france?", "paris", system="be brief."),
    item("spell cat backwards.", "tac is cat backwards."),
    item("say nothing.", ""),
]


def test_layer_names_are_canonical() -> None:
    assert layer_names([1, "2", "final", LAYERS, 1], LAYERS) == ("1", "2", "final")
    with pytest.raises(ValueError):
        layer_names([0], LAYERS)
    with pytest.raises(ValueError):
        layer_names([LAYERS + 1], LAYERS)


@pytest.mark.parametrize("layer", [1, 2, None])
def test_the_encoder_view_is_the_encoders_vector(loaded: LoadedCausalLM, layer: int | None) -> None:
    probe = RepresentationProbe(loaded, [1, 2, "final"], batch_size=3)
    blocks, rows = probe.extract(ITEMS)
    assert all(row.exact for row in rows)
    name = "final" if layer is None else str(layer)
    ours = np.concatenate(
        [blocks[block_key(name, "enc.final")], blocks[block_key(name, "enc.mean")]], axis=1
    )
    expected = HiddenStateEncoder(loaded, layer=layer).encode(ITEMS)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


@pytest.mark.parametrize("layer", [1, 2, None])
def test_the_answer_pooling_encoder_reads_the_generator_view(
    loaded: LoadedCausalLM, layer: int | None
) -> None:
    """``verifier build --pooling last+answer`` encodes what the ablation's
    ``gen.last,gen.answer`` variant measured, batched or one at a time."""
    probe = RepresentationProbe(loaded, [1, 2, "final"], batch_size=3)
    blocks, _ = probe.extract(ITEMS)
    name = "final" if layer is None else str(layer)
    ours = np.concatenate(
        [blocks[block_key(name, "gen.last")], blocks[block_key(name, "gen.answer")]], axis=1
    )
    encoder = HiddenStateEncoder(loaded, layer=layer, pooling="last+answer", batch_size=2)
    np.testing.assert_allclose(encoder.encode(ITEMS), ours, atol=1e-5)
    alone = np.concatenate([encoder.encode([one]) for one in ITEMS])
    np.testing.assert_allclose(alone, ours, atol=1e-5)
    default = HiddenStateEncoder(loaded, layer=layer).encode(ITEMS)
    assert not np.allclose(default, ours, atol=1e-3)  # another pooling: other vectors


def test_the_pooling_is_part_of_the_encoders_identity(loaded: LoadedCausalLM) -> None:
    default = HiddenStateEncoder(loaded, layer=2)
    answer = HiddenStateEncoder(loaded, layer=2, pooling="last+answer")
    assert default.identity["pooling"] == "final+mean"
    assert answer.identity["pooling"] == "last+answer"
    assert answer.pooling == "last+answer@layer2" and answer.dimension == default.dimension
    assert answer.fingerprint != default.fingerprint
    assert answer.fingerprint.startswith("hidden:last+answer@layer2:32:")
    with pytest.raises(ValueError, match="pooling"):
        HiddenStateEncoder(loaded, pooling="mean")


def _generation_states(
    loaded: LoadedCausalLM, one: VerificationInput, layer: int
) -> np.ndarray[Any, Any]:
    """Layer ``layer``'s states as generation computes them: the prompt's prefill, then each
    answer token fed back one at a time through the KV cache."""
    tokenizer = loaded.tokenizer
    prompt_text = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in one.messages], add_generation_prompt=True
    )
    prompt = tokenizer(prompt_text)["input_ids"]
    answer = tokenizer(one.response)["input_ids"]
    body = loaded.model.base_model
    with torch.inference_mode():
        out = body(input_ids=torch.tensor([prompt]), use_cache=True, output_hidden_states=True)
        states = [out.hidden_states[layer][0]]
        # Each answer token is fed back; its state is the one that predicts the next token
        # (for the last one, end-of-sequence).
        for token in answer:
            out = body(
                input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                use_cache=True, output_hidden_states=True,
            )  # fmt: skip
            states.append(out.hidden_states[layer][0])
    return torch.cat(states).numpy()


@pytest.mark.parametrize("index", range(len(ITEMS)))
def test_the_generator_view_is_the_generation_pass(loaded: LoadedCausalLM, index: int) -> None:
    probe = RepresentationProbe(loaded, [2], batch_size=4)
    blocks, rows = probe.extract(ITEMS)
    states = _generation_states(loaded, ITEMS[index], 2)
    start, end = rows[index].answer_start, rows[index].answer_end
    assert end == states.shape[0] and end - start == len(ITEMS[index].response)
    answer = states[start:end] if end > start else states[end - 1 : end]
    np.testing.assert_allclose(blocks["L2/gen.last"][index], states[end - 1], atol=1e-5)
    np.testing.assert_allclose(blocks["L2/gen.answer"][index], answer.mean(0), atol=1e-5)
    np.testing.assert_allclose(blocks["L2/gen.turn"][index], states.mean(0), atol=1e-5)
    # The encoder's view reads one token more (the end marker), so it differs.
    assert not np.allclose(blocks["L2/gen.last"][index], blocks["L2/enc.final"][index])


def test_a_batch_gives_each_row_what_it_gives_alone(loaded: LoadedCausalLM) -> None:
    probe = RepresentationProbe(loaded, [1, "final"], batch_size=4)
    together, _ = probe.extract(ITEMS)
    for index, one in enumerate(ITEMS):
        alone, _ = probe.extract([one])
        for name in probe.blocks:
            np.testing.assert_allclose(together[name][index], alone[name][0], atol=1e-5)
    assert set(together) == {block_key(layer, p) for layer in ("1", "final") for p in POOLINGS}


def _record(index: int, one: VerificationInput) -> AnswerRecord:
    return AnswerRecord(
        id=f"f/{index}#greedy", item_id=f"f/{index}", group_id=f"f/{index}", family="f",
        variant="greedy", question=one.messages[-1].content, messages=one.messages,
        response=one.response, token_logprobs=None, label=index % 2, check="", answer="",
        model="tiny",
    )  # fmt: skip


class CountingProbe(RepresentationProbe):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def extract(self, items: Sequence[VerificationInput]) -> Any:
        self.seen.extend(one.response for one in items)
        return super().extract(items)


def test_the_cache_runs_each_answer_once(loaded: LoadedCausalLM, tmp_path: Path) -> None:
    probe = CountingProbe(loaded, [2], batch_size=2)
    records = [_record(i, one) for i, one in enumerate(ITEMS[:3])]
    first = probe_records(records, probe, tmp_path, chunk_rows=2)
    assert first.encoded_rows == 3 and len(probe.seen) == 3
    grown = [*records, _record(3, ITEMS[3]), records[0]]
    again = probe_records(grown, probe, tmp_path)
    assert again.encoded_rows == 1 and probe.seen[-1] == ""  # only the new answer ran
    for name in probe.blocks:
        np.testing.assert_array_equal(again.block(name)[:3], first.block(name))
        np.testing.assert_array_equal(again.block(name)[4], first.block(name)[0])
    assert again.exact.all() and again.answer_tokens.tolist()[3] == 0
    other_layers = CountingProbe(loaded, [1], batch_size=2)
    assert probe_records(records, other_layers, tmp_path).encoded_rows == 3  # another store


def test_ablate_probes_only_development_rows_and_reuses_the_cache(
    loaded: LoadedCausalLM, tmp_path: Path
) -> None:
    from dataclasses import replace

    from sdm_router.training.ablation.report import write_report
    from sdm_router.training.ablation.runner import AblationOptions, ablate
    from sdm_router.training.splits import split_records
    from sdm_router.training.verifier_build import DEFAULT_TRAINING

    records = []
    for family in ("sums", "weekdays"):
        for group in range(40):
            one = item(f"what is {group} plus one?", f"{group + 1 - group % 2}.")
            base = _record(group, one)
            records.append(
                replace(base, id=f"{family}/{group}#greedy", item_id=f"{family}/{group}",
                        group_id=f"{family}/{group}", family=family, label=1 - group % 2)
            )  # fmt: skip
    training = replace(
        DEFAULT_TRAINING, exemplar_dimension=4, epochs=1, max_neighbors=16, device="cpu"
    )
    options = AblationOptions(
        variants=("gen.last@2+lp", "enc.final,enc.mean@final"), seeds=2,
        holdout_family="weekdays", training=training,
    )  # fmt: skip
    probe = CountingProbe(loaded, [2, "final"], batch_size=8)
    lines: list[str] = []
    document = ablate(records, probe, options, tmp_path, log=lines.append, show_progress=False)
    build = split_records(records, "weekdays", seed=0)
    unread = {r.id for r in (*build.test, *build.shift)}
    assert len(probe.seen) == document["rows"]["pool"] == len(records) - len(unread)
    assert [s["method"] for s in document["summaries"]][-2:] == ["enc.final,enc.mean@final"] * 2
    assert len(document["runs"]) == 2 * 2 + 2 * 2  # two variants and two baselines, 2 runs each
    assert document["timings"]["counts"]["train"] == "4 runs"
    again = ablate(records, probe, options, tmp_path, log=lines.append, show_progress=False)
    assert len(probe.seen) == document["rows"]["pool"]  # nothing ran the second time

    # Same seeds, same splits: the same results.
    def outcomes(runs: list[dict[str, Any]]) -> list[Any]:
        return [(r["method"], r["run"], r["regionAlphas"], r["perAlpha"]) for r in runs]

    assert outcomes(again["runs"]) == outcomes(document["runs"])
    markdown, _ = write_report(tmp_path / "out", again)
    assert "`gen.last@2+lp`" in markdown.read_text()


def test_the_layout_of_a_long_turn_keeps_its_end_and_the_answer_span(
    loaded: LoadedCausalLM,
) -> None:
    short = HiddenStateEncoder(loaded, pooling="last+answer", max_length=12)
    whole = HiddenStateEncoder(loaded, pooling="last+answer").layout(ITEMS[2])
    cut = short.layout(ITEMS[2])
    assert cut.ids == whole.ids[-12:]
    shift = len(whole.ids) - 12
    assert (cut.answer_start, cut.answer_end) == (
        max(whole.answer_start - shift, 0), whole.answer_end - shift,
    )  # fmt: skip
    empty = short.layout(ITEMS[3])  # no answer tokens: the last prompt token stands in
    assert empty.answer_start == empty.answer_end and empty.answer_span == (
        empty.last_answer, empty.last_answer + 1,
    )  # fmt: skip
    assert np.isfinite(short.encode(ITEMS)).all()
    with pytest.raises(ValueError, match="encode_texts pools final\\+mean"):
        short.encode_texts(["text"])
