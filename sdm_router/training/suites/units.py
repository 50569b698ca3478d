"""Unit conversions (procedural): "How many centimeters are in 3 meters?" -> 300."""

from __future__ import annotations

from dataclasses import dataclass

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.numeric import NumberChecker

# (larger unit, smaller unit, how many smaller units make one larger unit); exact by definition.
CONVERSIONS: tuple[tuple[str, str, int], ...] = (
    ("meters", "centimeters", 100),
    ("meters", "millimeters", 1000),
    ("centimeters", "millimeters", 10),
    ("kilometers", "meters", 1000),
    ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("years", "months", 12),
    ("feet", "inches", 12),
    ("yards", "feet", 3),
)
AMOUNTS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50)
PHRASINGS: tuple[str, ...] = (
    "How many {to} are in {n} {unit}?",
    "Convert {n} {unit} to {to}.",
    "{n} {unit} is how many {to}?",
    "What is {n} {unit} in {to}?",
    "Express {n} {unit} in {to}.",
)


def _pair_name(large: str, small: str) -> str:
    return f"{large}-{small}"


_PAIRS = {_pair_name(large, small): (large, small, factor) for large, small, factor in CONVERSIONS}


@dataclass(frozen=True, slots=True)
class UnitsFamily:
    """Every conversion and amount in both directions ("down": 3 meters in centimeters;
    "up": 300 centimeters in meters), one random template each."""

    name: str = "units"
    kind: FamilyKind = "procedural"

    def make_item(self, direction: str, pair: str, amount: int, phrasing: int) -> TaskItem:
        """``amount`` of the larger unit in the smaller (``direction`` "down") or ``amount``
        of the larger unit written in the smaller one, converted back ("up")."""
        item_id = f"{self.name}/{direction}/{pair}/{amount}/p{phrasing}"
        text = template(PHRASINGS, phrasing, item_id)
        if pair not in _PAIRS or direction not in {"down", "up"} or amount not in AMOUNTS:
            raise KeyError(item_id)
        large, small, factor = _PAIRS[pair]
        if direction == "down":
            question = text.format(n=amount, unit=large, to=small)
            answer = amount * factor
        else:
            question = text.format(n=amount * factor, unit=small, to=large)
            answer = amount
        question = question[:1].upper() + question[1:]
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=str(answer),
            aliases=(),
            checker=NumberChecker.build(answer, question),
            kind=direction,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """See the class docstring; shuffled by ``seed``."""
        rng = family_rng(self.name, seed)
        items = [
            self.make_item(direction, pair, amount, rng.randrange(len(PHRASINGS)))
            for direction in ("down", "up")
            for pair in _PAIRS
            for amount in AMOUNTS
        ]
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``units/<down|up>/<larger>-<smaller>/<amount>/p<k>``."""
        (direction, pair, amount), phrasing = split_id(item_id, self.name, 3)
        if not amount.isdigit():
            raise KeyError(item_id)
        return self.make_item(direction, pair, int(amount), phrasing)
