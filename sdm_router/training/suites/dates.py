"""Calendar arithmetic (procedural): months before/after a month, a date plus or minus some
days, and the number of days in a month."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from sdm_router.training.suites.base import FamilyKind, TaskItem, family_rng, split_id, template
from sdm_router.training.suites.checking import (
    Checker,
    CheckResult,
    char_span_tokens,
    is_hedged,
    is_negated,
    tokenize,
)
from sdm_router.training.suites.numeric import NumberChecker
from sdm_router.training.suites.weekdays import cyclic_checker

MONTHS: tuple[str, ...] = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
YEAR = 2025  # not a leap year; every date question names it
MONTH_OFFSETS = range(1, 12)
DAY_OFFSETS = range(1, 41)
DATES_PER_DIRECTION = 150

PHRASINGS: dict[str, tuple[str, ...]] = {
    "month_after": (
        "If it is {month} now, what month will it be in {n} {months}?",
        "What month comes {n} {months} after {month}?",
        "Which month is {n} {months} after {month}?",
        "It is {month}. What month will it be {n} {months} from now?",
        "Counting forward {n} {months} from {month}, which month do you reach?",
    ),
    "month_before": (
        "If it is {month} now, what month was it {n} {months} ago?",
        "What month comes {n} {months} before {month}?",
        "Which month is {n} {months} before {month}?",
        "It is {month}. What month was it {n} {months} ago?",
        "Counting back {n} {months} from {month}, which month do you reach?",
    ),
    "date_after": (
        "What date is {n} {days} after {date}?",
        "What is the date {n} {days} after {date}?",
        "If today is {date}, what will the date be in {n} {days}?",
        "Add {n} {days} to {date}. What is the new date?",
        "Which date comes {n} {days} after {date}?",
    ),
    "date_before": (
        "What date is {n} {days} before {date}?",
        "What was the date {n} {days} before {date}?",
        "If today is {date}, what was the date {n} {days} ago?",
        "Subtract {n} {days} from {date}. What is the new date?",
        "Which date comes {n} {days} before {date}?",
    ),
    "days_in_month": (
        "How many days are there in {month}?",
        "How many days does {month} have?",
        "What is the number of days in the month of {month}?",
        "{month} has how many days?",
        "How long is {month}, in days?",
    ),
}
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_MONTH_NAMES = {name: index + 1 for index, name in enumerate(MONTHS)}
_MONTH_NAMES.update(
    {name[:3]: index + 1 for index, name in enumerate(MONTHS) if name != "May"} | {"Sept": 9}
)
_MONTH = "|".join(sorted(_MONTH_NAMES, key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<{name}>\d{{4}}))?"
_DATE = re.compile(
    rf"\b(?P<m1>{_MONTH})\.?\s+(?:the\s+)?(?P<d1>\d{{1,2}}){_ORDINAL}\b{_YEAR.format(name='y1')}"
    rf"|\b(?P<d2>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?(?P<m2>{_MONTH})\b\.?{_YEAR.format(name='y2')}"
    r"|\b(?P<y3>\d{4})-(?P<m3>\d{2})-(?P<d3>\d{2})\b"
)
# Text right before / after the start date that restates the question ("10 days after March
# 25", "today is March 25", "March 25 + 10 days").
_DATE_ECHO_BEFORE = re.compile(
    r"(?:\bafter|\bbefore|\bfrom|\bsince|\bto|\btoday\s+is|\bstarting\s+(?:on|from))\s*$",
    re.IGNORECASE,
)
_DATE_ECHO_AFTER = re.compile(r"^\s*(?:plus\b|minus\b|\+|-\s*\d|and\s+(?:add|subtract))", re.I)


@dataclass(frozen=True, slots=True)
class DateMention:
    """A calendar date named in a response (``year`` None when it names none)."""

    month: int
    day: int
    year: int | None
    start: int
    end: int


def find_dates(text: str) -> list[DateMention]:
    """Dates written "April 4", "April 4th, 2025", "4 April", "the 4th of April" or
    "2025-04-04" (numeric day/month orders are ambiguous and not read)."""
    found = []
    for match in _DATE.finditer(text):
        groups = match.groupdict()
        year: int | None
        if groups["y3"]:
            month, day, year = int(groups["m3"]), int(groups["d3"]), int(groups["y3"])
        else:
            name = groups["m1"] or groups["m2"]
            month = _MONTH_NAMES[name]
            day = int(groups["d1"] or groups["d2"])
            year_text = groups["y1"] or groups["y2"]
            year = int(year_text) if year_text else None
        if 1 <= month <= 12 and 1 <= day <= 31:
            found.append(DateMention(month, day, year, match.start(), match.end()))
    return found


def format_date(value: date) -> str:
    """The date as "April 4, 2025"."""
    return f"{MONTHS[value.month - 1]} {value.day}, {value.year}"


@dataclass(frozen=True, slots=True)
class DateChecker:
    """Accepts a response naming the ``expected`` date (month and day; a year, when given,
    must match) and no other date.

    ``start`` is the question's date: named right after "after" / "before" / "from" /
    "today is" or before "+" / "plus" it restates the question and is skipped; named
    anywhere else it is a competing answer.
    """

    expected: date
    start: date

    def _is_echo(self, response: str, mention: DateMention) -> bool:
        if (mention.month, mention.day) != (self.start.month, self.start.day):
            return False
        return bool(
            _DATE_ECHO_BEFORE.search(response[: mention.start])
            or _DATE_ECHO_AFTER.match(response[mention.end :])
        )

    def check(self, response: str) -> CheckResult:
        """See ``checking``'s module rules: hedged, echoes, negated, several dates."""
        if is_hedged(tokenize(response)):
            return CheckResult("hedged")
        mentions = [m for m in find_dates(response) if not self._is_echo(response, m)]
        affirmed = [
            m for m in mentions if not is_negated(*char_span_tokens(response, m.start, m.end))
        ]
        if not mentions:
            return CheckResult("no_answer")
        if not affirmed:
            return CheckResult("negated")
        named = {(m.month, m.day, m.year or self.expected.year) for m in affirmed}
        first = affirmed[0]
        extracted = f"{MONTHS[first.month - 1]} {first.day}"
        if len(named) > 1:
            return CheckResult("multiple_answers", extracted)
        expected = (self.expected.month, self.expected.day, self.expected.year)
        return CheckResult("correct" if named == {expected} else "wrong", extracted)


@dataclass(frozen=True, slots=True)
class DatesFamily:
    """Month arithmetic (every start month and offset, one random template each), date
    arithmetic in ``YEAR`` (``DATES_PER_DIRECTION`` random start dates and offsets of 1 to 40
    days per direction) and the length of every month but February (every template)."""

    name: str = "dates"
    kind: FamilyKind = "procedural"

    def make_item(self, kind: str, params: tuple[str, ...], phrasing: int) -> TaskItem:
        """The ``kind`` question with id parameters ``params`` in template ``phrasing``."""
        item_id = "/".join((self.name, kind, *params, f"p{phrasing}"))
        text = template(PHRASINGS[kind], phrasing, item_id)
        checker: Checker
        if kind in {"month_after", "month_before"}:
            start, offset = _month_index(params[0], item_id), _offset(params[1], MONTH_OFFSETS)
            sign = 1 if kind == "month_after" else -1
            answer = MONTHS[(start + sign * offset) % 12]
            question = text.format(
                month=MONTHS[start], n=offset, months="month" if offset == 1 else "months"
            )
            checker = cyclic_checker(answer, MONTHS, question, offset)
        elif kind in {"date_after", "date_before"}:
            try:
                begin = date.fromisoformat(params[0])
            except ValueError:
                raise KeyError(item_id) from None
            offset = _offset(params[1], DAY_OFFSETS)
            if begin.year != YEAR:
                raise KeyError(item_id)
            sign = 1 if kind == "date_after" else -1
            end = begin + timedelta(days=sign * offset)
            answer = format_date(end)
            question = text.format(
                date=format_date(begin), n=offset, days="day" if offset == 1 else "days"
            )
            checker = DateChecker(end, begin)
        else:
            month = _month_index(params[0], item_id)
            if month == 1:
                raise KeyError(item_id)  # February's length depends on the year
            answer = str(_DAYS_IN_MONTH[month])
            question = text.format(month=MONTHS[month])
            checker = NumberChecker.build(answer, question)
        return TaskItem(
            id=item_id,
            family=self.name,
            question=question,
            answer=answer,
            aliases=(),
            checker=checker,
            kind=kind,
        )

    def generate(self, seed: int) -> list[TaskItem]:
        """See the class docstring; shuffled by ``seed``."""
        rng = family_rng(self.name, seed)
        items: list[TaskItem] = []
        for kind in ("month_after", "month_before"):
            for start in range(12):
                for offset in MONTH_OFFSETS:
                    params = (MONTHS[start].lower(), str(offset))
                    items.append(self.make_item(kind, params, rng.randrange(len(PHRASINGS[kind]))))
        first = date(YEAR, 1, 1)
        for kind in ("date_after", "date_before"):
            chosen: set[tuple[date, int]] = set()
            while len(chosen) < DATES_PER_DIRECTION:
                begin = first + timedelta(days=rng.randrange(365))
                chosen.add((begin, rng.choice(DAY_OFFSETS)))
            for begin, offset in sorted(chosen):
                params = (begin.isoformat(), str(offset))
                items.append(self.make_item(kind, params, rng.randrange(len(PHRASINGS[kind]))))
        for month in range(12):
            if month != 1:
                for phrasing in range(len(PHRASINGS["days_in_month"])):
                    items.append(
                        self.make_item("days_in_month", (MONTHS[month].lower(),), phrasing)
                    )
        rng.shuffle(items)
        return items

    def item_from_id(self, item_id: str) -> TaskItem:
        """Rebuild ``dates/<month_after|month_before>/<month>/<offset>/p<k>``,
        ``dates/<date_after|date_before>/<YYYY-MM-DD>/<offset>/p<k>`` or
        ``dates/days_in_month/<month>/p<k>``."""
        pieces = item_id.split("/")
        kind = pieces[1] if len(pieces) > 1 else ""
        if kind not in PHRASINGS:
            raise KeyError(item_id)
        params, phrasing = split_id(item_id, self.name, 2 if kind == "days_in_month" else 3)
        return self.make_item(kind, tuple(params[1:]), phrasing)


def _month_index(name: str, item_id: str) -> int:
    names = [month.lower() for month in MONTHS]
    if name not in names:
        raise KeyError(item_id)
    return names.index(name)


def _offset(text: str, allowed: range) -> int:
    if not text.isdigit() or int(text) not in allowed:
        raise KeyError(text)
    return int(text)
