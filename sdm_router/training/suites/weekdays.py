"""Weekday arithmetic (procedural): "If today is Monday, what day will it be in 3 days?"."""

from __future__ import annotations

from dataclasses import dataclass

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import NameChecker

DAYS: tuple[str, ...] = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
OFFSETS = range(1, 15)
PHRASINGS: dict[str, tuple[str, ...]] = {
    "after": (
        "If today is {day}, what day of the week will it be in {n} {days}?",
        "What day of the week comes {n} {days} after {day}?",
        "Today is {day}. Which day of the week is it {n} {days} from now?",
        "Starting on a {day}, which weekday is it after {n} {days}?",
        "What weekday falls {n} {days} after a {day}?",
    ),
    "before": (
        "If today is {day}, what day of the week was it {n} {days} ago?",
        "What day of the week comes {n} {days} before {day}?",
        "Today is {day}. Which day of the week was it {n} {days} ago?",
        "Starting on a {day}, which weekday was it {n} {days} earlier?",
        "What weekday falls {n} {days} before a {day}?",
    ),
}
# Words right before a start day (or month) that restate the question: "3 days after Monday",
# "today is Monday"; and right after it: "Monday plus 3 days", "Monday + 3" (the offset).
ECHO_BEFORE: tuple[str, ...] = (
    *("after", "before", "from", "since", "today is", "it is now", "starting on"),
    *("starting from", "start on", "start from", "counting from"),
)
ECHO_AFTER: tuple[str, ...] = ("plus", "minus", "and then")


def cyclic_checker(answer: str, names: tuple[str, ...], question: str, offset: int) -> NameChecker:
    """A checker for a weekday or month ``answer``; the start name restated around the offset
    ("3 days after Monday", "Monday + 3") is an echo, any other mention a candidate."""
    return NameChecker.build(
        (answer,),
        names,
        prompt=question,
        echo_before=ECHO_BEFORE,
        echo_after=(*ECHO_AFTER, str(offset)),
    )


@dataclass(frozen=True, slots=True)
class WeekdaysFamily:
    """Every start day, offset of 1 to 14 days, direction and template.

    The start day named in an answer counts as a candidate unless the answer restates the
    question there (see ``cyclic_checker``), so "Monday, Thursday" is two answers and
    "Today is Monday." none.
    """

    name: str = "weekdays"
    kind: FamilyKind = "procedural"

    def make_item(self, direction: str, start: int, offset: int, phrasing: int) -> TaskItem:
        """The question ``offset`` days ``direction`` ``DAYS[start]``."""
        item_id = f"{self.name}/{direction}/{DAYS[start].lower()}/{offset}/p{phrasing}"
        sign = 1 if direction == "after" else -1
        answer = DAYS[(start + sign * offset) % len(DAYS)]
        question = template(PHRASINGS[direction], phrasing, item_id).format(
            day=DAYS[start], n=offset, days="day" if offset == 1 else "days"
        )
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=answer,
            aliases=(),
            checker=cyclic_checker(answer, DAYS, question, offset),
            kind=direction,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """All combinations, shuffled by ``seed``."""
        items = [
            self.make_item(direction, start, offset, phrasing)
            for direction, phrasings in PHRASINGS.items()
            for start in range(len(DAYS))
            for offset in OFFSETS
            for phrasing in range(len(phrasings))
        ]
        family_rng(self.name, seed).shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``weekdays/<after|before>/<day>/<offset>/p<k>``."""
        (direction, day, offset), phrasing = split_id(item_id, self.name, 3)
        names = [name.lower() for name in DAYS]
        if direction not in PHRASINGS or day not in names or not offset.isdigit():
            raise KeyError(item_id)
        if int(offset) not in OFFSETS:
            raise KeyError(item_id)
        return self.make_item(direction, names.index(day), int(offset), phrasing)
