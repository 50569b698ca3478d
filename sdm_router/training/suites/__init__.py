"""Task suites: families of questions whose answers a checker grades exactly.

>>> from sdm_router.training.suites import get_suite
>>> items = get_suite("capitals").generate(seed=0, limit=3, styled=True)
>>> items[0].messages  # the system prompt, an earlier turn and the question, as drawn
>>> items[0].is_correct("The capital is ...")
"""

from sdm_router.facts.tables import (
    Country,
    CountryFacts,
    Element,
    load_capitals,
    load_country_facts,
    load_elements,
)
from sdm_router.training.suites.base import (
    ANSWER_FORMATS,
    CONTEXT_TURNS,
    PLAIN,
    SYSTEM_PROMPTS,
    FamilyKind,
    PromptStyle,
    TaskFamily,
    TaskItem,
    draw_style,
)
from sdm_router.training.suites.checking import Checker, CheckOutcome, CheckResult
from sdm_router.training.suites.registry import (
    DEFAULT_HOLDOUT,
    Suite,
    families_of_kind,
    get_family,
    get_item,
    get_suite,
    list_families,
    list_suites,
)

__all__ = [
    "ANSWER_FORMATS",
    "CONTEXT_TURNS",
    "DEFAULT_HOLDOUT",
    "PLAIN",
    "SYSTEM_PROMPTS",
    "CheckOutcome",
    "CheckResult",
    "Checker",
    "Country",
    "CountryFacts",
    "Element",
    "FamilyKind",
    "PromptStyle",
    "Suite",
    "TaskFamily",
    "TaskItem",
    "draw_style",
    "families_of_kind",
    "get_family",
    "get_item",
    "get_suite",
    "list_families",
    "list_suites",
    "load_capitals",
    "load_country_facts",
    "load_elements",
]
