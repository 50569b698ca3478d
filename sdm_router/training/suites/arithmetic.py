"""Arithmetic: +, -, × on operands of 1 to 3 digits (results never negative)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from sdm_router.training.suites.numeric import NumberChecker

OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
}
PHRASINGS: dict[str, tuple[str, ...]] = {
    "add": (
        "What is {a} + {b}?",
        "Calculate {a} plus {b}.",
        "What is the sum of {a} and {b}?",
        "Add {a} and {b}. What is the result?",
        "How much is {a} plus {b}?",
    ),
    "sub": (
        "What is {a} - {b}?",
        "Calculate {a} minus {b}.",
        "What is the difference between {a} and {b}?",
        "Subtract {b} from {a}. What is the result?",
        "How much is {a} take away {b}?",
    ),
    "mul": (
        "What is {a} × {b}?",
        "Calculate {a} times {b}.",
        "What is the product of {a} and {b}?",
        "What is {a} * {b}?",
        "Multiply {a} by {b}. What is the result?",
    ),
}
DIGITS = (1, 2, 3)


def _operand(rng_value: float, digits: int) -> int:
    low = 1 if digits == 1 else 10 ** (digits - 1)
    high = 10**digits - 1
    return low + int(rng_value * (high - low + 1))


@dataclass(frozen=True, slots=True)
class ArithmeticFamily:
    """``per_cell`` distinct problems for every (operation, digits of a, digits of b) cell."""

    per_cell: int = 40
    name: str = "arithmetic"
    kind: FamilyKind = "procedural"

    def make_item(self, operation: str, a: int, b: int, phrasing: int) -> TaskItem:
        """The item for ``a <operation> b`` in phrasing number ``phrasing``."""
        question = PHRASINGS[operation][phrasing].format(a=a, b=b)
        answer = OPERATIONS[operation](a, b)
        return TaskItem(
            id=f"{self.name}/{operation}/{a}/{b}/p{phrasing}",
            family=self.name,
            question=question,
            answer=str(answer),
            aliases=(),
            checker=NumberChecker.build(answer, question),
            kind=operation,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """``per_cell`` problems per cell, each in a random phrasing, shuffled by ``seed``.

        Subtraction uses only cells with ``a`` at least as long as ``b`` and redraws ``a < b``,
        so results are never negative; a cell smaller than ``per_cell`` yields what it has.
        """
        rng = family_rng(self.name, seed)
        items: list[TaskItem] = []
        for operation, digits_a, digits_b in product(OPERATIONS, DIGITS, DIGITS):
            if operation == "sub" and digits_a < digits_b:
                continue
            pairs: set[tuple[int, int]] = set()
            for _ in range(self.per_cell * 100):
                if len(pairs) == self.per_cell:
                    break
                a, b = _operand(rng.random(), digits_a), _operand(rng.random(), digits_b)
                if operation != "sub" or a >= b:
                    pairs.add((a, b))
            for a, b in sorted(pairs):
                items.append(
                    self.make_item(operation, a, b, rng.randrange(len(PHRASINGS[operation])))
                )
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``arithmetic/<op>/<a>/<b>/p<k>``."""
        (operation, a, b), phrasing = split_id(item_id, self.name, 3)
        if operation not in OPERATIONS or phrasing >= len(PHRASINGS[operation]):
            raise KeyError(item_id)
        return self.make_item(operation, int(a), int(b), phrasing)
