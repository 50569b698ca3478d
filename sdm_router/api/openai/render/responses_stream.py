"""A verified ``response`` object replayed as the Responses API's event stream.

Verify-then-stream: the cascade has already run (errors were HTTP statuses); the events are
``response.created``, ``response.in_progress``, per output item ``response.output_item.added``
(and per message part ``response.content_part.added``, word-sized ``response.output_text.delta``
or ``response.refusal.delta`` events, their ``.done`` events, ``response.content_part.done``),
``response.output_item.done``, then ``response.completed`` (``response.incomplete`` when cut)
carrying the whole response with its ``verification``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from sdm_router.api.openai.render.base import JSONObject
from sdm_router.pipeline.serving import text_pieces


def _frame(kind: str, number: int, fields: JSONObject) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": number, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _events(response: JSONObject) -> Iterator[tuple[str, JSONObject]]:
    pending: dict[str, Any] = {**response, "status": "in_progress", "output": []}
    pending.pop("verification", None)
    pending["incomplete_details"] = None
    yield "response.created", {"response": pending}
    yield "response.in_progress", {"response": pending}
    for index, item in enumerate(response["output"]):
        if item["type"] != "message":
            yield "response.output_item.added", {"output_index": index, "item": item}
            yield "response.output_item.done", {"output_index": index, "item": item}
            continue
        empty = {**item, "status": "in_progress", "content": []}
        yield "response.output_item.added", {"output_index": index, "item": empty}
        for part_index, part in enumerate(item["content"]):
            where = {"item_id": item["id"], "output_index": index, "content_index": part_index}
            refusal = part["type"] == "refusal"
            blank = {"type": "refusal", "refusal": ""} if refusal else {**part, "text": ""}
            yield "response.content_part.added", {**where, "part": blank}
            text = part["refusal"] if refusal else part["text"]
            for piece in text_pieces(text):
                if refusal:
                    yield "response.refusal.delta", {**where, "delta": piece}
                else:
                    yield "response.output_text.delta", {**where, "delta": piece, "logprobs": []}
            if refusal:
                yield "response.refusal.done", {**where, "refusal": text}
            else:
                yield "response.output_text.done", {**where, "text": text, "logprobs": []}
            yield "response.content_part.done", {**where, "part": part}
        yield "response.output_item.done", {"output_index": index, "item": item}
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield final, {"response": response}


def response_events(response: JSONObject) -> bytes:
    """The whole event stream of ``response`` (a rendered ``response`` object)."""
    return b"".join(
        _frame(kind, number, fields) for number, (kind, fields) in enumerate(_events(response))
    )
