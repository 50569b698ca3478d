"""``auth.keys`` entries for tests: a name and the SHA-256 of a plain key."""

from __future__ import annotations

import hashlib
from typing import Any


def sha256_hex(key: str) -> str:
    """What ``auth.keys[].sha256`` holds for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(name: str, key: str, **fields: Any) -> dict[str, Any]:
    """One ``auth.keys`` (or ``auth.admin_keys``) entry: ``routes``, ``models``, ``limits``."""
    return {"name": name, "sha256": sha256_hex(key), **fields}


def bearer(key: str) -> dict[str, str]:
    """The header that presents ``key``."""
    return {"authorization": f"Bearer {key}"}
