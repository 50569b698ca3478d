"""What the console's artifacts page shows of the live artifact: its lineage facts and its
regions, read from the shipped artifact and from an updated one's recorded parents."""

from __future__ import annotations

from dataclasses import replace

from sdm_router.config import PACKAGED_ARTIFACTS
from sdm_router.verifier.sdm.model import SDMModel
from sdm_router.verifier.sdm_verifier import lineage_of

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
