"""structlog set-up: JSON lines in production, readable console output on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import structlog


def _describe(arg: Any) -> Any:
    """A queued message as its actor and id: its arguments are events, with personal data."""
    if hasattr(arg, "actor_name") and hasattr(arg, "message_id") and hasattr(arg, "args"):
        return f"{arg.actor_name}[{arg.message_id}]"
    return arg


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_describe(a) for a in record.args)
        return record

    make.redacts = True  # type: ignore[attr-defined]
    return make


def redact_messages() -> None:
    """Every log record of the process, dramatiq's "Failed to process message ..." lines
    included, names a message by actor and id instead of printing its arguments."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts", False):
        logging.setLogRecordFactory(_redacting(factory))


def configure(json_output: bool | None = None, level: str | None = None) -> None:
    redact_messages()
    if json_output is None:
        fmt = os.environ.get("LOYALTY_LOG_FORMAT", "")
        json_output = fmt == "json" or (fmt != "console" and not sys.stderr.isatty())
    level_name = (level or os.environ.get("LOYALTY_LOG_LEVEL") or "INFO").upper()
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
