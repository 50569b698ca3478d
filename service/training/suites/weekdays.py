"""Weekday arithmetic (procedural): "If today is Monday, what day will it be in 3 days?"."""

from __future__ import annotations

from dataclasses import dataclass

from service.training.suites.base import FamilyKind, TaskItem, family_rng, split_id
from service.training.suites.checking import NameChecker

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
    ),
    "before": (
        "If today is {day}, what day of the week was it {n} {days} ago?",
        "What day of the week comes {n} {days} before {day}?",
        "Today is {day}. Which day of the week was it {n} {days} ago?",
    ),
}


@dataclass(frozen=True, slots=True)
class WeekdaysFamily:
    """Every start day, offset of 1 to 14 days, direction and phrasing.

    Weekday names from the prompt (the start day) are not competing candidates, because
    answers often restate the question.
    """

    name: str = "weekdays"
    kind: FamilyKind = "procedural"

    def make_item(self, direction: str, start: int, offset: int, phrasing: int) -> TaskItem:
        """The question ``offset`` days ``direction`` ``DAYS[start]``."""
        sign = 1 if direction == "after" else -1
        answer = DAYS[(start + sign * offset) % len(DAYS)]
        prompt = PHRASINGS[direction][phrasing].format(
            day=DAYS[start], n=offset, days="day" if offset == 1 else "days"
        )
        return TaskItem(
            id=f"{self.name}/{direction}/{DAYS[start].lower()}/{offset}/p{phrasing}",
            family=self.name,
            prompt=prompt,
            answer=answer,
            aliases=(),
            checker=NameChecker.build((answer,), DAYS, ignore=prompt),
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
        if direction not in PHRASINGS or day not in names or phrasing >= 3:
            raise KeyError(item_id)
        try:
            return self.make_item(direction, names.index(day), int(offset), phrasing)
        except ValueError:
            raise KeyError(item_id) from None
