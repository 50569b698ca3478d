"""Task suites: families of questions whose answers a checker grades exactly.

>>> from service.training.suites import get_suite
>>> items = get_suite("capitals").generate(seed=0, limit=3)
>>> items[0].is_correct("The capital is ...")
"""

from service.facts.tables import Country, Element, load_capitals, load_elements
from service.training.suites.base import FamilyKind, TaskFamily, TaskItem
from service.training.suites.checking import Checker, CheckOutcome, CheckResult
from service.training.suites.registry import (
    Suite,
    families_of_kind,
    get_family,
    get_item,
    get_suite,
    list_families,
    list_suites,
)

__all__ = [
    "CheckOutcome",
    "CheckResult",
    "Checker",
    "Country",
    "Element",
    "FamilyKind",
    "Suite",
    "TaskFamily",
    "TaskItem",
    "families_of_kind",
    "get_family",
    "get_item",
    "get_suite",
    "list_families",
    "list_suites",
    "load_capitals",
    "load_elements",
]
