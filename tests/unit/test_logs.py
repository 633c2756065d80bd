"""The logging set-up: our events (structlog's native path) and other libraries' `logging`
records come out as one JSON object a line with the same fields, whole lines from any
thread."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from autoscaler.runtime.logs import configure_logging


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Leave structlog and the root logger as this module found them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def lines_of(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_our_event_and_a_library_record_are_json_lines_with_the_same_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.contextvars.bind_contextvars(tick=7)
    try:
        structlog.get_logger("autoscaler.runtime.agent").info("tick_summary", decided=3)
    finally:
        structlog.contextvars.clear_contextvars()
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", "/api")

    ours, theirs = lines_of(capsys)

    assert {key: ours[key] for key in ("event", "level", "logger", "decided", "tick")} == {
        "event": "tick_summary", "level": "info", "logger": "autoscaler.runtime.agent",
        "decided": 3, "tick": 7}
    assert {key: theirs[key] for key in ("event", "level", "logger")} == {
        "event": "retrying /api", "level": "warning", "logger": "urllib3.connectionpool"}
    for line in (ours, theirs):
        assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_an_event_keeps_its_own_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.get_logger("autoscaler.decisions").info(
        "scaling_decision", service="web", timestamp="2026-11-30T12:00:01Z")

    [line] = lines_of(capsys)
    assert line["timestamp"] == "2026-11-30T12:00:01Z"
    assert line["logger"] == "autoscaler.decisions"


def test_an_exception_is_rendered_with_its_traceback(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    configure_logging("json")
    try:
        raise ValueError("no such service")
    except ValueError:
        structlog.get_logger("autoscaler.runtime.agent").exception("tick_failed")
        logging.getLogger("apscheduler.executors").exception("job raised")

    ours, theirs = lines_of(capsys)
    for line in (ours, theirs):
        assert line["level"] == "error"
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert line["exception"].endswith("ValueError: no such service")


def test_levels_below_the_configured_one_are_dropped(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    configure_logging("json")
    log = structlog.get_logger("autoscaler.runtime.agent")
    log.debug("hidden")
    logging.getLogger("docker.api").debug("hidden")
    logging.getLogger("apscheduler.scheduler").info("hidden: apscheduler from WARNING up")
    log.info("shown")
    assert [line["event"] for line in lines_of(capsys)] == ["shown"]

    configure_logging("json", level=logging.WARNING)
    log.info("hidden")
    logging.getLogger("docker.api").info("hidden")
    log.warning("shown")
    logging.getLogger("docker.api").warning("shown too")
    assert [line["event"] for line in lines_of(capsys)] == ["shown", "shown too"]


def test_a_later_call_writes_to_the_stdout_of_that_moment(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("json")
    log = structlog.get_logger("autoscaler.runtime.agent")

    elsewhere = io.StringIO()
    monkeypatch.setattr("sys.stdout", elsewhere)
    configure_logging("auto")
    log.info("elsewhere")
    logging.getLogger("docker").warning("elsewhere too")
    monkeypatch.undo()

    assert capsys.readouterr().out == ""
    assert [json.loads(line)["event"] for line in elsewhere.getvalue().splitlines()] == [
        "elsewhere", "elsewhere too"]


def test_lines_from_many_threads_never_interleave(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    threads, per_thread = 8, 2_000
    start = threading.Barrier(threads)

    def speak(number: int) -> None:
        log = structlog.get_logger("autoscaler.decisions")
        library = logging.getLogger("urllib3.connectionpool")
        start.wait()
        for line in range(per_thread):
            if line % 10 == 0:
                library.warning("thread %d line %d", number, line)
            else:
                log.info("scaling_decision", thread=number, line=line, message="x" * 60)

    workers = [threading.Thread(target=speak, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert len(lines) == threads * per_thread
    assert sum(line["logger"] == "urllib3.connectionpool" for line in lines) == \
        threads * per_thread // 10


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_line_that_cannot_be_written_is_lost_not_raised_and_said_once_on_stderr(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoscaler.runtime.logs._lost_lines_said", False)
    monkeypatch.setattr("sys.stdout", _FullDisk())
    configure_logging("json")
    log = structlog.get_logger("autoscaler.decisions")

    log.info("scaling_decision", service="web")
    log.warning("scaling_decision", service="api")
    logging.getLogger("urllib3.connectionpool").warning("retrying")

    said = capsys.readouterr().err.splitlines()
    assert said == ["autoscaler: log lines are being lost: cannot write them to stdout: "
                    "[Errno 28] No space left on device"]
