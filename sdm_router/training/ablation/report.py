"""``ablation.md`` and ``ablation.json`` from the results document of ``runner.ablate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdm_router.training.ablation.runner import BASELINES, REGION_SHARE

MARKDOWN_FILE = "ablation.md"
JSON_FILE = "ablation.json"


def _number(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None else f"{scale * value:.{digits}f}"


def _spread(spread: dict[str, Any], scale: float = 1.0, digits: int = 3) -> str:
    if spread["median"] is None:
        return "–"
    median = _number(spread["median"], scale, digits)
    low, high = _number(spread["min"], scale, digits), _number(spread["max"], scale, digits)
    return f"{median} [{low}–{high}]"


def _table(summaries: list[dict[str, Any]], alpha: float) -> list[str]:
    lines = [
        f"### α = {alpha}",
        "",
        "| method | dim | region found | precision ≥ α | accepted % | precision | recall |"
        " s / run |",
        "|---|---:|---:|---:|---|---|---|---:|",
    ]
    for s in summaries:
        if abs(s["alpha"] - alpha) > 1e-9:
            continue
        baseline = s["method"] in BASELINES
        name = f"*{s['method']}* (baseline)" if baseline else f"`{s['method']}`"
        seconds = "–" if baseline else f"{s['medianRunSeconds']:.1f}"
        region = f"{s['regionsFound']}/{s['runs']}"
        lines.append(
            f"| {name} | {s['dimension'] or '–'} | {region} | {s['precisionHolds']}/{s['runs']} | "
            f"{_spread(s['acceptanceRate'], 100, 1)} | {_spread(s['precision'])} | "
            f"{_spread(s['recall'])} | {seconds} |"
        )
    return [*lines, ""]


def render(document: dict[str, Any], command: str | None = None) -> str:
    """The markdown report."""
    options, rows = document["options"], document["rows"]
    carved = rows["carved"]
    share = rows["validationCorrect"] / carved["validation"] if carved["validation"] else 0.0
    training = options["training"]
    lines = [
        "# Verifier representation ablation (validation split)",
        "",
        "Every figure is on a validation split carved by group from the build's train + "
        "calibration rows; the build's test split, the held-out families "
        f"({', '.join(options['holdoutFamilies']) or 'none'}) and the held-out phrasings "
        f"(templates {options.get('holdoutPhrasings', 'none')}) are never read. "
        f"Each method: {options['seeds']} runs (one training seed block each"
        + (", and a new validation carve each run" if options["varySplits"] else "")
        + "); cells are median [min–max] over the runs. Gateway view: accepted = in "
        f"distribution, predicted correct and {options['estimator']} region alpha ≥ α; "
        "precision over the runs that accepted anything; recall of the correct answers.",
        "",
        f"- data: {rows['data']} rows; development pool {rows['pool']}; carved "
        f"{carved['train']} train / {carved['calibration']} calibration / "
        f"{carved['validation']} validation ({100 * share:.1f} % correct); "
        f"{rows['inexactTokenization']} rows tokenize differently inside the turn",
        (
            f"- data mix: train and calibration keep the families with at least "
            f"{100 * options['minFamilyAccuracy']:g} % correct carved training answers; "
            "validation keeps every family"
            if options.get("minFamilyAccuracy", 0.0) > 0.0
            else "- data mix: every family"
        ),
        f"- SDM: M = {training['exemplarDimension']}, {training['epochs']} epochs, lr "
        f"{training['learningRate']}, {training['shuffles']} shuffle(s) per seed block, "
        f"max neighbours {training['maxNeighbors']}, first seed {training['seed']}",
        f"- probe: {document['probe']['model']} layers {document['probe']['layers']}",
    ]
    if command:
        lines.append(f"- command: `{command}`")
    lines.append("")
    for alpha in options["alphas"]:
        lines.extend(_table(document["summaries"], alpha))
    lines.append(
        "Winner rule (validation only): among the SDM variants whose calibration found a "
        f"region in at least {int(REGION_SHARE * 100)} % of the runs, whose median run "
        "accepts something and whose median precision reaches α, the highest median recall "
        "(then the highest minimum recall, then the smallest input)."
    )
    lines.append("")
    recipes = document.get("buildRecipes", {})
    for alpha, winner in document["winner"].items():
        lines.append(f"- α = {alpha}: " + (f"`{winner}`" if winner else "no variant qualifies"))
        built = document.get("buildWinner", {}).get(alpha)
        if winner and built != winner:
            lines.append(
                "  (not a `verifier build` recipe; the best one is "
                + (f"`{built}`" if built else "none")
                + ")"
            )
        if built:
            flags = build_flags(recipes[built], options.get("minFamilyAccuracy", 0.0))
            lines.append(f"  build it with `verifier build {flags}`")
    lines.extend(["", "Wall time per stage:", "", "| stage | seconds | count |", "|---|---:|---:|"])
    timings = document["timings"]
    for stage, seconds in timings["seconds"].items():
        lines.append(f"| {stage} | {seconds:.1f} | {timings['counts'].get(stage, '')} |")
    lines.append(f"| total | {document['wallSeconds']:.1f} | |")
    return "\n".join(lines) + "\n"


def build_flags(recipe: dict[str, Any], min_family_accuracy: float = 0.0) -> str:
    """The ``verifier build`` options that make a recipe (``buildRecipes``) with the ablation's
    data mix."""
    layer = recipe["layer"]
    flags = ("" if layer is None else f"--layer {layer} ") + f"--pooling {recipe['pooling']}"
    if min_family_accuracy > 0.0:
        flags += f" --min-family-accuracy {min_family_accuracy:g}"
    return flags


def write_report(out: Path, document: dict[str, Any], command: str | None = None) -> list[Path]:
    """Write ``ablation.md`` and ``ablation.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    markdown, data = out / MARKDOWN_FILE, out / JSON_FILE
    markdown.write_text(render(document, command), encoding="utf-8")
    data.write_text(json.dumps({**document, "command": command}, indent=2) + "\n", "utf-8")
    return [markdown, data]
