"""Structured logging: one JSON object per line.

Every record carries ``timestamp``, ``level``, ``logger`` and ``message``, plus whatever was
passed as ``extra=`` (request_id, route, decision, timings...). The request id of the
current task is added automatically when :data:`request_id_var` is set (the request-id
middleware sets it). Prompt and response text never belong in ``extra`` unless the
operator enabled ``log_prompts``: pass them through :func:`redact`.

Each HTTP request leaves exactly one ``request finished`` line, written by the API's request-log
middleware when the response ends (streams included). Serving adds its details (route, decision,
attempts) to the request scope's ``log_fields``, the same dict; code deep below it that has no
scope (a backend's retry policy) counts into it with :func:`count_in_request`. The two context
variables here are the logging context only: log correlation for any library's record, and
that counter; no request fact travels through them.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = [
    "JSONFormatter",
    "configure_logging",
    "count_in_request",
    "redact",
    "request_fields_var",
    "request_id_var",
]

request_id_var: ContextVar[str | None] = ContextVar("sdm_router_request_id", default=None)
# The fields of the current request's log line; the request-log middleware sets a fresh dict
# per request (tasks started during the request copy the context, so they share the dict).
request_fields_var: ContextVar[dict[str, Any] | None] = ContextVar(
    "sdm_router_request_fields", default=None
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# uvicorn installs its own handlers unless started with log_config=None; route them to root.
_SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")

_HANDLER_NAME: Final = "sdm_router"


class JSONFormatter(logging.Formatter):
    """Format a record as a single-line JSON object with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        try:  # one line per request: orjson (compact), the standard library for what it refuses
            return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return _json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str, json: bool = True) -> None:
    """Send every log record to stderr, as JSON lines by default; idempotent.

    ``json=False`` gives a plain human-readable format for local development.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if json:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True


def redact(text: str | None, enabled: bool) -> str | None:
    """``text`` itself when prompt logging is enabled, else only its length."""
    if text is None or enabled:
        return text
    return f"[redacted {len(text)} chars]"


def count_in_request(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter field ``name`` of the current request's log line."""
    current = request_fields_var.get()
    if current is not None:
        current[name] = int(current.get(name, 0)) + amount
