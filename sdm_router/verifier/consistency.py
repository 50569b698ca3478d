"""Self-consistency attributes: how many of a best-of-n tier's answers agree with each one.

Serving can compute these without a checker: a best-of-n tier generates its ``n`` candidates for
one request together, and each candidate's attribute depends only on those ``n`` texts.

Definition (``CONSISTENCY_NAMES``):

* ``self_agreement``: the fraction of the *other* ``n - 1`` answers of the same tier and
  request whose :func:`normalize_answer` form equals this answer's; 0 when it has no siblings;
* ``has_siblings``: 1 when the answer came with siblings (a best-of-n tier, n ≥ 2), else 0
  (a greedy tier, a retrieval regeneration, a single sample).

:func:`normalize_answer` is deliberately independent of any task checker: take the text after
the last ``Answer:`` label when there is one, fold case and diacritics, turn every run of
characters that are not letters or digits into one space, drop a leading article. So "Paris.",
"paris" and "Answer: Paris" agree; "The capital is Paris." and "Paris" do not. Pure Python.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]

CONSISTENCY_NAMES = ("self_agreement", "has_siblings")
CONSISTENCY_DIMENSION = len(CONSISTENCY_NAMES)
CONSISTENCY_COMPOSITION = "self-consistency-v1[" + ",".join(CONSISTENCY_NAMES) + "]"

_LABEL = re.compile(r"\banswer\s*[:：]", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_ARTICLES = ("the ", "a ", "an ")


def normalize_answer(text: str) -> str:
    """The checker-independent form two answers must share to agree (see the module doc)."""
    labelled = list(_LABEL.finditer(text))
    if labelled:
        text = text[labelled[-1].end() :]
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).casefold()
    words = _NOT_WORD.sub(" ", folded).strip()
    for article in _ARTICLES:
        if words.startswith(article):
            return words[len(article) :]
    return words


def agreement(answers: Sequence[str]) -> list[float]:
    """For each answer of one tier, the fraction of the others that agree with it (0 alone)."""
    forms = [normalize_answer(answer) for answer in answers]
    counts = Counter(forms)
    others = len(forms) - 1
    return [(counts[form] - 1) / others if others > 0 else 0.0 for form in forms]


def consistency_matrix(answers: Sequence[str], tiers: Sequence[Hashable | None]) -> F32Array:
    """``[len(answers), CONSISTENCY_DIMENSION]`` attributes. ``tiers[i]``: a key shared by the
    answers one best-of-n tier gave to one request, or None for an answer without siblings."""
    if len(answers) != len(tiers):
        raise ValueError(f"{len(answers)} answers but {len(tiers)} tier keys")
    members: dict[Hashable, list[int]] = {}
    for index, key in enumerate(tiers):
        if key is not None:
            members.setdefault(key, []).append(index)
    result = np.zeros((len(answers), CONSISTENCY_DIMENSION), dtype=np.float32)
    for rows in members.values():
        if len(rows) < 2:
            continue
        for row, value in zip(rows, agreement([answers[i] for i in rows]), strict=True):
            result[row] = (value, 1.0)
    return result
