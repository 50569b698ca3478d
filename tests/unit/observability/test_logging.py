"""JSON logging: one object per line, extra fields, request id, redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from sdm_router.observability.logging import (
    JSONFormatter,
    configure_logging,
    redact,
    request_id_var,
)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root and server loggers after a test that reconfigures them."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level,
               logging.getLogger(name).propagate)
        for name in names
    }  # fmt: skip
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def format_record(record: logging.LogRecord) -> dict[str, object]:
    line = JSONFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def make_record(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("sdm_router.test")
    record = logger.makeRecord(
        "sdm_router.test", logging.INFO, __file__, 1, message, (), None, extra=extra
    )
    return record


def test_record_has_the_standard_fields_and_extras() -> None:
    record = make_record(
        "request finished", route="auto", decision="accept", timings={"generate": 0.2}
    )
    payload = format_record(record)
    assert payload["message"] == "request finished"
    assert payload["level"] == "INFO"
    assert payload["logger"] == "sdm_router.test"
    assert str(payload["timestamp"]).endswith("+00:00")
    assert payload["route"] == "auto"
    assert payload["decision"] == "accept"
    assert payload["timings"] == {"generate": 0.2}
    # LogRecord internals are not dumped
    assert "pathname" not in payload
    assert "args" not in payload


def test_request_id_comes_from_the_context() -> None:
    token = request_id_var.set("req-123")
    try:
        payload = format_record(make_record("hello"))
    finally:
        request_id_var.reset(token)
    assert payload["request_id"] == "req-123"
    assert "request_id" not in format_record(make_record("hello"))


def test_exceptions_and_unserialisable_values() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.getLogger("x").makeRecord(
        "x", logging.ERROR, __file__, 1, "failed %s", ("once",), exc_info, extra={"obj": object()}
    )
    payload = format_record(record)
    assert payload["message"] == "failed once"
    assert "RuntimeError: boom" in str(payload["exception"])
    assert str(payload["obj"]).startswith("<object object")


def test_configure_logging_emits_json_lines(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    configure_logging("INFO")  # idempotent: still one line per record
    logging.getLogger("sdm_router.pipeline").info("decided", extra={"route": "auto"})
    logging.getLogger("sdm_router.pipeline").debug("hidden at INFO")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["route"] == "auto"


def test_configure_logging_routes_uvicorn_loggers_to_root(root_logging: None) -> None:
    uvicorn_logger = logging.getLogger("uvicorn.access")
    uvicorn_logger.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_logger.propagate = False
    configure_logging("warning", json=False)
    assert uvicorn_logger.handlers == []
    assert uvicorn_logger.propagate is True
    assert logging.getLogger().level == logging.WARNING


def test_configure_logging_rejects_unknown_level(root_logging: None) -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose")


def test_redact_keeps_text_only_when_enabled() -> None:
    assert redact("my secret prompt", enabled=True) == "my secret prompt"
    assert redact("my secret prompt", enabled=False) == "[redacted 16 chars]"
    assert "secret" not in str(redact("my secret prompt", enabled=False))
    assert redact(None, enabled=False) is None
