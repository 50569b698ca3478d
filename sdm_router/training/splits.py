"""Train / calibration / test splits by fact (group); task families held out as shift and one
phrasing (template) of every family held out as the phrasing check."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sdm_router.training.records import AnswerRecord
from sdm_router.training.suites.base import ANSWER_FORMATS

SPLIT_NAMES = ("train", "calibration", "test", "shift", "phrasing")


@dataclass(frozen=True, slots=True)
class Splits:
    """Records per split. ``shift`` holds every record of the held-out families; ``phrasing``
    the records asked in a held-out template (see ``split_records``)."""

    train: list[AnswerRecord]
    calibration: list[AnswerRecord]
    test: list[AnswerRecord]
    shift: list[AnswerRecord]
    phrasing: list[AnswerRecord] = field(default_factory=list)

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


@dataclass(frozen=True, slots=True)
class PhrasingHoldout:
    """Template indices (the ``p<k>`` of an item id) whose rows are kept out of train,
    calibration and test: ``every_family`` for each family not named in ``per_family``, which
    sets a family's own (possibly empty) tuple. The index counts within a question kind, so
    holding out 1 holds out the second template of every kind of the family."""

    every_family: tuple[int, ...] = ()
    per_family: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def templates(self, family: str) -> tuple[int, ...]:
        """The template indices held out of ``family``."""
        for name, indices in self.per_family:
            if name == family:
                return indices
        return self.every_family

    @property
    def spec(self) -> str:
        """The ``--holdout-phrasings`` spelling of this rule ("1", "1,capitals:3", "none")."""
        entries = [str(k) for k in self.every_family]
        for name, indices in self.per_family:
            entries += [f"{name}:{k}" for k in indices] if indices else [f"{name}:none"]
        return ",".join(entries) or "none"

    def __bool__(self) -> bool:
        return bool(self.every_family) or any(indices for _, indices in self.per_family)


# The default rule: the second template (p1) of every family. Each family has at least five
# templates per question kind (capitals six), so each keeps four or more in training; p1 is
# never a family's only template (a family with one template keeps it), and it stays the same
# when templates are appended. p1 of arithmetic is "Calculate 3 plus 4."-style.
DEFAULT_HOLDOUT_PHRASINGS = PhrasingHoldout(every_family=(1,))
PhrasingHoldOut = PhrasingHoldout | str | None
_ENTRY = re.compile(r"^(?:(?P<family>[A-Za-z0-9_.-]+):)?(?P<index>\d+|none)$")
_TEMPLATE = re.compile(r"^p(\d+)")


def holdout_phrasings(holdout: PhrasingHoldOut) -> PhrasingHoldout:
    """The rule from its spelling: comma-separated entries, each a template index ``k`` (held
    out of every family), ``family:k`` (that family instead: repeat for several) or
    ``family:none``; ``none`` / "" / None for no held-out phrasing. ``ValueError`` otherwise."""
    if isinstance(holdout, PhrasingHoldout):
        return holdout
    every: list[int] = []
    own: dict[str, list[int]] = {}
    for raw in (holdout or "").split(","):
        entry = raw.strip()
        if not entry or entry == "none":
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(
                f"holdout phrasing {entry!r}: expected a template index k, family:k, "
                "family:none or none"
            )
        family, index = match.group("family"), match.group("index")
        if family is None:
            if index == "none":
                continue
            every.append(int(index))
        else:
            indices = own.setdefault(family, [])
            if index != "none":
                indices.append(int(index))
    return PhrasingHoldout(
        every_family=tuple(sorted(set(every))),
        per_family=tuple((name, tuple(sorted(set(ks)))) for name, ks in sorted(own.items())),
    )


def template_index(record: AnswerRecord) -> int | None:
    """The template index ``k`` of a suite row's item id (``family/.../p<k>f..s..c..``); None
    for rows whose id names no template (imported traffic)."""
    match = _TEMPLATE.match(record.item_id.rpartition("/")[2])
    return int(match.group(1)) if match else None


_INSTRUCTIONS = tuple(sorted({f.instruction for f in ANSWER_FORMATS if f.instruction}, key=len))


def question_text(record: AnswerRecord) -> str:
    """The question a row asks, compared across splits: the user's turn without the appended
    answer-format instruction, case-folded, whitespace collapsed."""
    text = " ".join(record.question.split())
    for instruction in reversed(_INSTRUCTIONS):  # longest first
        if text.endswith(" " + instruction):
            text = text[: -len(instruction) - 1]
            break
    return text.casefold()


def split_records(
    records: Sequence[AnswerRecord],
    holdout_family: HoldOut,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.45, 0.35, 0.20),
    holdout_phrasing: PhrasingHoldOut = DEFAULT_HOLDOUT_PHRASINGS,
) -> Splits:
    """Assign whole groups (every phrasing and variant of one fact) to one split; every
    record of a held-out family (``holdout_family``: see ``holdout_families``) goes to shift.

    Grouping keeps paraphrases of a test question out of the support and calibration sets, so
    test accuracy measures new facts, not new wordings.

    Rows asked in a held-out template (``holdout_phrasing``: see ``holdout_phrasings``; by
    default p1 of every family) go to ``phrasing`` instead of their group's split, unless their
    question text (``question_text``) is also asked by a row that stays in train, calibration or
    test: then they stay with their group. So no phrasing row's question is seen in training,
    while its fact may be (in another template): the check measures new wordings. Groups are
    assigned as without the rule, so ``holdout_phrasing=None`` gives the earlier splits.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    held_out = set(holdout_families(holdout_family))
    rule = holdout_phrasings(holdout_phrasing)
    shift = [r for r in records if r.family in held_out]
    groups: dict[str, list[AnswerRecord]] = defaultdict(list)
    for record in records:
        if record.family not in held_out:
            groups[record.group_id].append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    cut_train = round(len(keys) * fractions[0])
    cut_calibration = cut_train + round(len(keys) * fractions[1])

    def candidate(record: AnswerRecord) -> bool:
        return template_index(record) in rule.templates(record.family)

    kept_questions = {
        question_text(r) for rows in groups.values() for r in rows if not candidate(r)
    }
    parts: list[list[AnswerRecord]] = [[], [], []]
    phrasing: list[AnswerRecord] = []
    for position, key in enumerate(keys):
        part = 0 if position < cut_train else 1 if position < cut_calibration else 2
        for record in groups[key]:
            moved = candidate(record) and question_text(record) not in kept_questions
            (phrasing if moved else parts[part]).append(record)
    return Splits(
        train=parts[0], calibration=parts[1], test=parts[2], shift=shift, phrasing=phrasing
    )


def held_out_templates(rows: Iterable[AnswerRecord]) -> dict[str, list[int]]:
    """Family -> the template indices found among ``rows`` (what a phrasing split holds)."""
    found: dict[str, set[int]] = defaultdict(set)
    for record in rows:
        index = template_index(record)
        if index is not None:
            found[record.family].add(index)
    return {family: sorted(found[family]) for family in sorted(found)}


def covered_families(train: Sequence[AnswerRecord], minimum_accuracy: float) -> tuple[str, ...]:
    """The families of ``train`` whose share of correct answers there is at least
    ``minimum_accuracy`` (sorted): the data mix a verifier trains and calibrates on when the
    families the model almost never answers right are left out (``--min-family-accuracy``).
    Only training labels decide it, so a family with no training rows is not covered (callers
    keep every family when ``minimum_accuracy`` is 0: ``keep_covered``)."""
    if not 0.0 <= minimum_accuracy <= 1.0:
        raise ValueError(f"minimum family accuracy must lie in [0, 1], got {minimum_accuracy}")
    totals: dict[str, list[int]] = {}
    for record in train:
        counts = totals.setdefault(record.family, [0, 0])
        counts[0] += record.label
        counts[1] += 1
    return tuple(
        sorted(f for f, (right, rows) in totals.items() if right >= minimum_accuracy * rows)
    )


def keep_covered(
    rows: Sequence[AnswerRecord], families: Sequence[str], minimum_accuracy: float
) -> list[AnswerRecord]:
    """``rows`` of the covered ``families``; every row when ``minimum_accuracy`` is 0 (no data
    mix: a family that has calibration rows but no training rows stays)."""
    if minimum_accuracy <= 0.0:
        return list(rows)
    kept = set(families)
    return [row for row in rows if row.family in kept]


class EmptyDataMix(ValueError):
    """No family reaches the data mix's minimum accuracy."""

    def __init__(self, minimum_accuracy: float) -> None:
        super().__init__(
            f"no family has at least {minimum_accuracy:g} of its training answers correct: "
            "nothing left to train on (lower --min-family-accuracy)"
        )
