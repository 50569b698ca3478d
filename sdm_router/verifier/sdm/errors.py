"""Typed errors for the SDM estimator: each names where the problem is."""

from __future__ import annotations

from pathlib import Path


class SDMError(Exception):
    """Base class of every SDM estimator error."""


class ArtifactError(SDMError):
    """A `.sdmkitmodel` package is missing, corrupt, truncated or inconsistent."""

    def __init__(self, file: str | Path, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


class DatasetError(SDMError):
    """An input dataset row (or the dataset as a whole) is invalid."""

    def __init__(self, source: str | Path, row: int | None, problem: str) -> None:
        self.source = str(source)
        self.row = row
        self.problem = problem
        where = self.source if row is None else f"{self.source}: row {row}"
        super().__init__(f"{where}: {problem}")


class SDMConfigurationError(SDMError, ValueError):
    """A training or scoring option is out of range, or the data cannot be trained or matched
    with it (not the gateway's start-up ``sdm_router.core.errors.ConfigurationError``)."""
