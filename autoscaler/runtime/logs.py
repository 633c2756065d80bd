"""Structured logging: one JSON object a line on stdout when not on a terminal, readable
console lines on one; other libraries' `logging` records go through the same renderer."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")


def _timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """ISO 8601 UTC, unless the event brings its own (a decision carries its tick's time)."""
    event.setdefault("timestamp", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    return event


def configure_logging(log_format: LogFormat = "auto", *, level: int = logging.INFO) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
