"""Structured logging: one JSON object a line on stdout when not on a terminal, readable
console lines on one; other libraries' `logging` records go through the same renderer.

Our own events take structlog's native path (a filtering bound logger, the processors, then a
`WriteLogger`): at one `scaling_decision` per service per tick, a 10,000-service fleet writes
10,000 lines a tick, and the stdlib route (a `logging.Logger`, a `LogRecord`, a
`ProcessorFormatter`) cost several times as much CPU a line. Other libraries' records
(apscheduler, urllib3, docker...) still go through `logging`: a root handler renders them with
the same processors and hands each line to a `WriteLogger` on the same file. Every line, ours
or theirs, is one write under structlog's lock for the file, so lines from several threads
never interleave."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")


def _timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """ISO 8601 UTC, unless the event brings its own (a decision carries its tick's time)."""
    if "timestamp" not in event:
        event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return event


class _EncoderOnce:
    """`json.dumps` as JSONRenderer's `serializer`, the same output, but the `JSONEncoder` is
    built on the first call and kept: given `default` (which JSONRenderer always gives),
    `json.dumps` builds a new one on every call."""

    def __init__(self) -> None:
        self._encoder: json.JSONEncoder | None = None

    def __call__(self, obj: Any, **dumps_kw: Any) -> str:
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = json.JSONEncoder(**dumps_kw)
        return encoder.encode(obj)


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's `WriteLogger` (one write and a flush a line, under structlog's lock for the
    file) carrying the name given to `structlog.get_logger`, which `add_logger_name` reads
    into the `logger` field. A line that cannot be written (a full disk, a closed pipe) is
    lost rather than raised into the tick, as `logging`'s handlers do: the agent goes on
    deciding and applying; stderr says so once."""

    def __init__(self, file: TextIO | None = None, name: str | None = None) -> None:
        super().__init__(file)
        self.name = name or "autoscaler"

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except (OSError, ValueError) as error:
            _lost_line(error)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


_lost_lines_said = False


def _lost_line(error: Exception) -> None:
    global _lost_lines_said
    if _lost_lines_said:
        return
    _lost_lines_said = True
    with contextlib.suppress(OSError, ValueError):
        print(f"autoscaler: log lines are being lost: cannot write them to stdout: {error}",
              file=sys.stderr, flush=True)


class _NamedWriteLoggerFactory:
    """structlog's logger factory: `structlog.get_logger(name)` gets the one
    `_NamedWriteLogger` of that name on `file`. It is called on every event (loggers are not
    cached on first use, so that `configure_logging` can be called again), hence the dict."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._loggers: dict[str | None, _NamedWriteLogger] = {}

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args else None
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers.setdefault(name, _NamedWriteLogger(self._file, name))
        return logger


class _WholeLineHandler(logging.Handler):
    """The root handler for other libraries' `logging` records: each record, rendered by the
    formatter, is handed whole to `out`, so it is one write under the same lock as our own
    events."""

    def __init__(self, out: _NamedWriteLogger) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.msg(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(log_format: LogFormat = "auto", *, level: int = logging.INFO) -> None:
    """Log to the `sys.stdout` of the moment (JSON lines, or the console renderer on a
    terminal with `auto`) from `level` up (one of `logging`'s standard levels); apscheduler's
    records from WARNING up. May be called again: the last call wins."""
    out = sys.stdout
    use_json = log_format == "json" or (log_format == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_EncoderOnce())
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        structlog.processors.format_exc_info,
    ]
    # Built first, in the calling thread: it registers structlog's lock for `out`, which every
    # logger the factory builds later, in whichever thread, then shares.
    foreign_out = _NamedWriteLogger(out)
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_NamedWriteLoggerFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    handler = _WholeLineHandler(foreign_out)
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
