"""How a listing's parameters are spelled on the wire: times and the opaque page cursor (the
decisions API and the console read them alike)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sdm_router.core.errors import InvalidRequest


def instant(value: str | None, param: str) -> float | None:
    """Seconds since the epoch from epoch seconds or an ISO 8601 time."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidRequest(
            f"Invalid value for '{param}': give epoch seconds or an ISO 8601 time.", param=param
        ) from None


def encode_cursor(cursor: tuple[float, str]) -> str:
    """An opaque page cursor."""
    return base64.urlsafe_b64encode(f"{cursor[0]!r}|{cursor[1]}".encode()).decode()


def decode_cursor(value: str | None) -> tuple[float, str] | None:
    """The (created, request id) of a page cursor; a 400 naming ``cursor`` when malformed."""
    if value is None:
        return None
    try:
        created, _, request_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return float(created), request_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("Invalid value for 'cursor'.", param="cursor") from None
