"""What the console shows of the live artifact: its lineage facts and regions, read from the
shipped artifact and from an updated one's recorded parents; and the support rows' text that
``verifier build --exemplar-text`` stores, saved and carried to the verdicts' exemplars."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from sdm_router.config import PACKAGED_ARTIFACTS
from sdm_router.core.generation import Message
from sdm_router.training.records import AnswerRecord
from sdm_router.training.verifier_build import with_exemplar_text
from sdm_router.verifier.sdm.model import SDMModel
from sdm_router.verifier.sdm_verifier import lineage_of, to_verdicts

SHIPPED = PACKAGED_ARTIFACTS / "smollm2-135m.sdmkitmodel"


def test_the_shipped_artifact_records_how_it_was_made() -> None:
    model = SDMModel.load(SHIPPED, device="cpu")
    facts = dict(lineage_of(model))
    assert facts["created"] == model.contents.created_at
    assert facts["calibrated on"] == "local:embedded: 1716 rows"
    assert facts["training seed"] == "15"
    assert "updated from" not in facts
    assert [region.alpha for region in model.contents.regions] == [0.95, 0.9, 0.65]


def test_an_updated_artifact_names_each_parent_newest_first() -> None:
    model = SDMModel.load(SHIPPED, device="cpu")
    metadata = dict(model.contents.metadata or {})
    metadata["sdmRouter"] = {
        **metadata["sdmRouter"],
        "lineage": {
            "parentArtifactId": "b", "mode": "recalibrate", "rule": "group",
            "parentLineage": {"parentArtifactId": "a", "mode": "retrain", "rule": "group"},
        },
    }  # fmt: skip
    updated = SDMModel(replace(model.contents, metadata=metadata), device="cpu")
    parents = [value for name, value in lineage_of(updated) if name == "updated from"]
    assert parents == ["b (recalibrate, group)", "a (retrain, group)"]


def answer(identifier: str, question: str, response: str) -> AnswerRecord:
    return AnswerRecord(
        id=identifier, item_id=identifier, group_id=identifier, family="capitals",
        variant="greedy", question=question, messages=(Message(role="user", content=question),),
        response=response, token_logprobs=None, label=1, check="exact", answer="Roseau",
        model="local:embedded",
    )  # fmt: skip


def test_exemplar_text_is_stored_at_build_and_survives_saving(tmp_path: Path) -> None:
    model = SDMModel.load(SHIPPED, device="cpu")
    first = model.contents.support.ids[0]
    built = with_exemplar_text(model, [answer(first, "Capital of Dominica?", "Roseau <b>")])
    built.save(tmp_path / "with-text.sdmkitmodel")
    support = SDMModel.load(tmp_path / "with-text.sdmkitmodel", device="cpu").contents.support
    assert support.documents is not None
    assert support.documents[0] == "Q: Capital of Dominica?\nA: Roseau <b>"
    assert support.documents[1] is None  # a row the build had no record for
    assert model.contents.support.documents is None  # the shipped artifact holds no text


def test_the_verdicts_exemplars_carry_the_text_of_their_own_rows() -> None:
    model = SDMModel.load(SHIPPED, device="cpu")
    ids = model.contents.support.ids
    documents = tuple(f"text of {identifier}" for identifier in ids)
    rows = (
        np.random.default_rng(0)
        .normal(size=(2, model.contents.configuration.embedding_dimension))
        .astype(np.float32)
    )
    scores = model.score(rows, nearest_exemplars=5)
    verdicts = to_verdicts(scores, [5, 5], documents)
    exemplars = [exemplar for verdict in verdicts for exemplar in verdict.nearest_exemplars]
    assert len(exemplars) == 10
    assert all(exemplar.text == f"text of {exemplar.id}" for exemplar in exemplars)
    plain = to_verdicts(scores, [5, 5])
    assert all(e.text is None for verdict in plain for e in verdict.nearest_exemplars)
