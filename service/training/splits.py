"""Train / calibration / test splits by fact (group), with task families held out as shift."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.training.records import AnswerRecord

SPLIT_NAMES = ("train", "calibration", "test", "shift")


@dataclass(frozen=True, slots=True)
class Splits:
    """Records per split. ``shift`` holds every record of the held-out families."""

    train: list[AnswerRecord]
    calibration: list[AnswerRecord]
    test: list[AnswerRecord]
    shift: list[AnswerRecord]

    def as_dict(self) -> dict[str, list[AnswerRecord]]:
        """Split name -> records."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


HoldOut = str | Iterable[str] | None


def holdout_families(holdout: HoldOut) -> tuple[str, ...]:
    """The held-out family names: one name, a comma-separated list ("weekdays,countries"),
    several names, or None / "none" / "" for none."""
    if holdout is None:
        return ()
    names = holdout.split(",") if isinstance(holdout, str) else list(holdout)
    cleaned = (name.strip() for name in names)
    return tuple(dict.fromkeys(name for name in cleaned if name and name != "none"))


def split_records(
    records: Sequence[AnswerRecord],
    holdout_family: HoldOut,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.45, 0.35, 0.20),
) -> Splits:
    """Assign whole groups (every phrasing and variant of one fact) to one split; every
    record of a held-out family (``holdout_family``: see ``holdout_families``) goes to shift.

    Grouping keeps paraphrases of a test question out of the support and calibration sets, so
    test accuracy measures new facts, not new wordings.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    held_out = set(holdout_families(holdout_family))
    shift = [r for r in records if r.family in held_out]
    groups: dict[str, list[AnswerRecord]] = defaultdict(list)
    for record in records:
        if record.family not in held_out:
            groups[record.group_id].append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    cut_train = round(len(keys) * fractions[0])
    cut_calibration = cut_train + round(len(keys) * fractions[1])
    parts: list[list[AnswerRecord]] = [[], [], []]
    for position, key in enumerate(keys):
        part = 0 if position < cut_train else 1 if position < cut_calibration else 2
        parts[part].extend(groups[key])
    return Splits(train=parts[0], calibration=parts[1], test=parts[2], shift=shift)
