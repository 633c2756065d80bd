"""The HTTP endpoints' application, without a socket."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from autoscaler.adapters import http


def get(app: Any, path: str, **headers: str) -> bytes:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        pass

    return b"".join(app({"PATH_INFO": path, **headers}, start_response))


def test_scrapes_of_one_body_share_one_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that asks for gzip and never reads holds its compression until it is cut
    off: scrapes of the same metrics compress them once."""
    compressions: list[int] = []
    compress = gzip.compress

    def counted(data: bytes, compresslevel: int = 9) -> bytes:
        compressions.append(len(data))
        return compress(data, compresslevel=compresslevel)

    monkeypatch.setattr(http.gzip, "compress", counted)
    body = [b"autoscaler_ticks_total 1.0\n"]
    app = http._app({}, lambda: body[0])

    answers = [get(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip") for _ in range(3)]
    body[0] = b"autoscaler_ticks_total 2.0\n"
    answers.append(get(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip"))

    assert [gzip.decompress(a) for a in answers] == [b"autoscaler_ticks_total 1.0\n"] * 3 + [
        b"autoscaler_ticks_total 2.0\n"]
    assert len(compressions) == 2
