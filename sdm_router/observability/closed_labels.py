"""Checks of metric label values: closed sets (an unknown value is a programming error and
raises ``ValueError``) and config names (never empty)."""

from __future__ import annotations


def check(value: str, allowed: frozenset[str], label: str) -> str:
    """``value``, when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{label}={value!r} is not one of {sorted(allowed)}")
    return value


def check_name(value: str, label: str) -> str:
    """``value``, when it is a non-empty name."""
    if not value:
        raise ValueError(f"{label} must be a non-empty string")
    return value
