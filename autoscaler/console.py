"""Standard output and error for the commands that print a copy of what they write to files
(validate, backtest, tune, report, demo): a reader that goes away early (`| head`, `| grep
-q`) must cost the console's copy only, never the files still to be written."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO, cast


class _ReaderMayLeave:
    """A console stream that drops what it cannot write: from the first write (or flush)
    that meets a closed pipe, its descriptor is the null device, so that this write, the
    later ones and the interpreter's last flush go nowhere instead of raising
    BrokenPipeError through the command."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_null()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_null()

    def _to_null(self) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` as `_ReaderMayLeave` streams while the block runs,
    flushed through them at its end: what a stream still buffers (a pipe's stdout is
    block-buffered) would otherwise meet the closed pipe in the interpreter's last flush,
    which prints "Exception ignored ... BrokenPipeError" and exits 120."""
    saved = sys.stdout, sys.stderr
    streams = _ReaderMayLeave(sys.stdout), _ReaderMayLeave(sys.stderr)
    sys.stdout, sys.stderr = (cast(TextIO, stream) for stream in streams)
    try:
        yield
    finally:
        for stream in streams:
            stream.flush()
        sys.stdout, sys.stderr = saved
