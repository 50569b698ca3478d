"""The committed build (data/smollm2-135m-v2-rows.jsonl.gz) still means what it says: every
row's item rebuilds from its id and today's checkers give it the stored label and outcome, so
a checker change that would silently relabel the data fails here (rebuild or relabel then)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

from sdm_router.training.suites import get_item

ROWS = Path(__file__).resolve().parents[3] / "data" / "smollm2-135m-v2-rows.jsonl.gz"


def test_every_committed_row_keeps_its_label_under_todays_checkers() -> None:
    drifted: list[str] = []
    variants: Counter[str] = Counter()
    with gzip.open(ROWS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        item = get_item(row["item_id"])
        result = item.check(row["response"])
        variants[row["variant"].split("-")[0]] += 1
        if (int(result.correct), str(result.outcome)) != (row["label"], row["check"]):
            drifted.append(f"{row['id']}: stored {row['check']}, now {result.outcome}")
    assert len(rows) >= 15_000 and len({row["id"] for row in rows}) == len(rows)
    assert set(variants) == {"greedy", "sampled", "retrieval"}
    assert not drifted, drifted[:10]
