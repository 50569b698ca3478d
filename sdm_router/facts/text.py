"""Text keys for facts: folding for comparisons and slugs for ids."""

from __future__ import annotations

import unicodedata

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʻ": "'", "`": "'", "´": "'"})


def fold(text: str) -> str:
    """Lowercase ``text`` and strip diacritics and apostrophes ("Sana'a" -> "sanaa")."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return stripped.casefold().replace("'", "")


def slug(text: str) -> str:
    """A lowercase ASCII id fragment: "Côte d'Ivoire" -> "cote-divoire"."""
    return "-".join("".join(c if c.isalnum() else " " for c in fold(text)).split())
