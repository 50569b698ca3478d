"""The fields the gateway adds to what the official ``openai`` client parses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def extra_fields(model: BaseModel) -> dict[str, Any]:
    """``model.model_extra``: the client's models keep fields they do not declare, such as
    ``verification`` on a completion or ``kind`` on a model."""
    fields = model.model_extra
    assert fields is not None, f"{type(model).__name__} does not keep extra fields"
    return fields
