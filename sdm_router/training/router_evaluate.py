"""``router evaluate``: what the prompt router skips on held-out prompts, per family.

Reads the prompt splits ``router build`` wrote (test, shift, phrasing: each read once here) and
their per-tier labels, and reports per split and family:

- ``skip rate``: prompts whose tier 0 the router skips (it starts later or abstains);
- ``abstain-early rate``: prompts where every tier is skipped (``predicted_unanswerable``);
- ``false skips``: prompts skipped at tier 0 that tier 0 would have answered correctly, as a
  share of those tier 0 answers correctly (a label is "correct", the cautious stand-in for
  "accepted and correct": see ``router_build``); likewise for abstentions against any tier;
- ``calls saved``: backend calls the skips save, counting one call per tier tried plus the
  retrieval regeneration at tier 0 where its label says greedy failed (the rows hold no
  generation times; the benchmark measures time);
- the skip decision's calibration: wrong skips over all skipped tiers, with its one-sided
  Clopper-Pearson upper bound at 95 %, against ``1 - skip_alpha``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdm_router.core.guarantee import upper_bound
from sdm_router.core.verdict import Verdict
from sdm_router.pipeline.prompt_routing import fails_confidently
from sdm_router.training.records import AnswerRecord, read_records
from sdm_router.verifier.encoder import HiddenStateEncoder
from sdm_router.verifier.prompt_router import PromptRouterModel

SPLITS = ("test", "shift", "phrasing")
BOUND_CONFIDENCE = 0.95


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(slots=True)
class Tally:
    """Counts for one split and family."""

    prompts: int = 0
    skipped: int = 0
    abstained: int = 0
    tier0_correct: int = 0
    tier0_false_skips: int = 0
    any_correct: int = 0
    false_abstentions: int = 0
    calls_without: int = 0
    calls_with: int = 0
    skips: int = 0  # skipped tiers, every tier counted
    wrong_skips: int = 0

    def row(self) -> dict[str, Any]:
        """The reported figures."""
        return {
            "prompts": self.prompts,
            "skip_rate": _share(self.skipped, self.prompts),
            "abstain_early_rate": _share(self.abstained, self.prompts),
            "false_skips": self.tier0_false_skips,
            "false_skip_share": _share(self.tier0_false_skips, self.tier0_correct),
            "false_abstentions": self.false_abstentions,
            "false_abstention_share": _share(self.false_abstentions, self.any_correct),
            "calls_without_router": self.calls_without,
            "calls_with_router": self.calls_with,
            "calls_saved_share": _share(self.calls_without - self.calls_with, self.calls_without),
            "skipped_tiers": self.skips,
            "wrong_skips": self.wrong_skips,
            "wrong_skip_rate": _share(self.wrong_skips, self.skips),
            "wrong_skip_upper_95": round(
                upper_bound(self.wrong_skips, self.skips, BOUND_CONFIDENCE), 4
            )
            if self.skips
            else None,
        }


def _calls(labels: list[int], start: int | None, retrieval: bool) -> int:
    """Backend calls from tier ``start`` on (None: abstained at once) until a tier answers."""
    if start is None:
        return 0
    calls = 0
    for tier in range(start, len(labels)):
        calls += 1
        if tier == 0 and retrieval and not labels[0]:
            calls += 1
        if labels[tier]:
            break
    return calls


def evaluate_router(
    router: PromptRouterModel,
    encoder: HiddenStateEncoder,
    splits_dir: Path,
    skip_alpha: float = 0.95,
) -> dict[str, Any]:
    """The report (see the module) as a JSON-ready dict."""
    return evaluate_at(router, encoder, splits_dir, (skip_alpha,))[0]


def evaluate_at(
    router: PromptRouterModel,
    encoder: HiddenStateEncoder,
    splits_dir: Path,
    skip_alphas: Sequence[float],
) -> list[dict[str, Any]]:
    """One report per ``skip_alphas`` value from one reading of each split."""
    scored = {}
    for name in SPLITS:
        path = splits_dir / f"{name}.jsonl"
        records = read_records(path) if path.exists() else []
        if records:
            features = encoder.encode_prompts([r.messages for r in records])
            scored[name] = (records, router.score(features))
    return [_report(router, splits_dir, scored, alpha) for alpha in skip_alphas]


def _report(
    router: PromptRouterModel,
    splits_dir: Path,
    scored: dict[str, tuple[list[AnswerRecord], list[tuple[Verdict, ...]]]],
    skip_alpha: float,
) -> dict[str, Any]:
    labels = json.loads((splits_dir / "labels.json").read_text())
    retrieval = bool(router.manifest.get("retrievalInLabels", False))
    report: dict[str, Any] = {"skip_alpha": skip_alpha, "router": router.router_id, "splits": {}}
    for name, (records, verdicts) in scored.items():
        tallies: dict[str, Tally] = defaultdict(Tally)
        for record, per_tier in zip(records, verdicts, strict=True):
            truth = [int(value) for value in labels[record.item_id]]
            skips = [fails_confidently(verdict, skip_alpha) for verdict in per_tier]
            start = next((tier for tier, skip in enumerate(skips) if not skip), None)
            for tally in (tallies[record.family], tallies["all"]):
                tally.prompts += 1
                tally.skipped += start != 0
                tally.abstained += start is None
                tally.tier0_correct += truth[0]
                tally.tier0_false_skips += truth[0] and start != 0
                tally.any_correct += any(truth)
                tally.false_abstentions += any(truth) and start is None
                tally.calls_without += _calls(truth, 0, retrieval)
                tally.calls_with += _calls(truth, start, retrieval)
                tally.skips += sum(skips)
                tally.wrong_skips += sum(s and t for s, t in zip(skips, truth, strict=True))
        report["splits"][name] = {family: tally.row() for family, tally in sorted(tallies.items())}
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table per split."""
    lines = [f"# Prompt router report (skip_alpha {report['skip_alpha']})", ""]
    columns = (
        "prompts", "skip_rate", "abstain_early_rate", "false_skips", "false_skip_share",
        "false_abstention_share", "calls_saved_share", "skipped_tiers", "wrong_skip_rate",
        "wrong_skip_upper_95",
    )  # fmt: skip
    for split, families in report["splits"].items():
        lines += [f"## {split}", "", "| family | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for family, row in families.items():
            cells = ["—" if row[c] is None else str(row[c]) for c in columns]
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
