"""One rule for text: every string a request body carries is valid Unicode.

JSON can spell half of a UTF-16 surrogate pair on its own (``"\\ud800"``), and Python's JSON
parser, the one FastAPI reads bodies with, turns it into a ``str`` holding a lone surrogate
(it also decodes UTF-8-encoded surrogates, and UTF-16 bodies, with ``surrogatepass``). Such a
string has no UTF-8 form: a tokenizer, the decision store, orjson and the log writer all fail
on it, deep inside a request.

orjson refuses lone surrogates. A body orjson refuses and Python's parser accepts is searched,
and one holding a lone surrogate anywhere (a value or a key, at any depth) is refused with a
400 naming its field (``messages[0].content``) before any route, model or log sees it: by
:class:`ValidTextMiddleware` for every route, whatever it is, and by the hot routes' fast path
for its own requests (it parses with orjson already, so the hot path pays nothing). A body
with no ``\\u`` escape, no byte 0xED (a UTF-8 surrogate's first byte) and no NUL (UTF-16 or
UTF-32) cannot hold one and costs a byte search; any other, one orjson parse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from sdm_router.api.edge.body import read_body, replaying
from sdm_router.api.errors import error_response
from sdm_router.core.errors import InvalidRequest


def is_valid_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode (it has a UTF-8 form: no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with every lone surrogate written as ``\\udXXX`` (safe to render and log)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _child(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def invalid_text_field(document: Any) -> str | None:
    """The field path (``messages[0].content``) of the first string in ``document`` (parsed
    JSON), in document order, that is not valid Unicode, or the path of the object whose key
    is not; ``"<body>"`` for a top-level string; None when every string is valid.

    Iterative, so a deeply nested document cannot exhaust the stack."""
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not is_valid_text(value):
                return path or "<body>"
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                if not is_valid_text(key):
                    return _child(path, _printable(key))
                children.append((_child(path, key), item))
            pending.extend(reversed(children))
        elif isinstance(value, list):
            pending.extend((_child(path, i), value[i]) for i in range(len(value) - 1, -1, -1))
    return None


def invalid_text_in_body(body: bytes) -> str | None:
    """The field of ``body`` (JSON bytes) holding invalid text, as :func:`invalid_text_field`;
    None when orjson reads the body (it refuses lone surrogates) or no parser does."""
    if not (b"\\u" in body or b"\xed" in body or b"\x00" in body):
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        return None
    try:
        document = json.loads(body)  # what FastAPI's declared routes parse the body with
    except (ValueError, RecursionError):  # not JSON at all: the route says so
        return None
    return invalid_text_field(document)


def invalid_text(field: str) -> InvalidRequest:
    """The 400 for a body whose ``field`` holds a lone surrogate."""
    param = None if field == "<body>" else field
    return InvalidRequest(
        f"Invalid value for '{field}': the text holds a lone UTF-16 surrogate (U+D800 to "
        "U+DFFF), which is not valid Unicode; send each character whole (a surrogate pair "
        "escapes one character above U+FFFF).",
        param=param,
        code="invalid_value",
    )


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


class ValidTextMiddleware:
    """Refuses (400) a request whose JSON body holds invalid text, before any route reads it;
    hands every other body on unchanged. Requests ``skip`` accepts are not read here: the
    hot routes' fast path, which parses with orjson and checks what orjson refuses itself
    (``api/openai/fast_route.py``), so the hot path pays nothing."""

    def __init__(self, app: ASGIApp, skip: Callable[[Scope], bool]) -> None:
        self.app = app
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.skip(scope) or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except ClientDisconnect:
            await self.app(scope, replaying(None, receive), send)
            return
        field = invalid_text_in_body(body)
        if field is not None:
            await error_response(invalid_text(field))(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)
