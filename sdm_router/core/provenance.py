"""What produced an on-disk cache: the versions of the libraries that wrote it.

Every cache (dequantized weights, encoded features, retrieval embeddings) is keyed by these
versions as well as by its inputs, so a cache written under one set of libraries is never read
under another: it is rebuilt instead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterable

NOT_INSTALLED = "not-installed"


def library_versions(distributions: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}``; ``not-installed`` for a missing one."""
    versions = {}
    for name in sorted(set(distributions)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def versions_digest(distributions: Iterable[str]) -> str:
    """A short, stable digest of :func:`library_versions`, for cache keys."""
    canonical = json.dumps(library_versions(distributions), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
