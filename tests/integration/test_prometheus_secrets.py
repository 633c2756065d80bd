"""Credentials reach the server, and never an error message: for each place a secret comes
from (the URL, a file, the environment, a header), each way a query fails leaves it out of
the error's str, repr and traceback, even when the server echoes the request back."""

from __future__ import annotations

import base64
import json
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.adapters.prometheus import PrometheusAccess, PrometheusSource
from autoscaler.core.ports import SourceUnavailable
from tests.integration.http_fakes import (
    Answer,
    HostileServer,
    ScriptedServer,
    Seen,
    api_answer,
    vector,
)

USER = "ops"
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


@dataclass(frozen=True)
class Source:
    """Where a secret comes from: how to build the access to `url` and what the server
    must have received."""

    secret: str
    build: Callable[[str, Path, pytest.MonkeyPatch], PrometheusAccess]
    header: str
    sent: str

    def forms(self) -> list[str]:
        """The secret in every form it could be printed in."""
        return [self.secret, urllib.parse.quote(self.secret, safe=""),
                urllib.parse.quote_plus(self.secret),
                base64.b64encode(f"{USER}:{self.secret}".encode()).decode()]


def in_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "secret"
    path.write_text(text + "\n")
    return str(path)


def from_env(url: str, env: pytest.MonkeyPatch, name: str, token: str) -> PrometheusAccess:
    env.setenv(name, token)
    return PrometheusAccess.from_options(url, bearer_token_env=name)


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{secret}".encode()).decode()


SOURCES = {
    "url-userinfo": Source(
        "url/pa:ss@w%rd-Q1",
        lambda url, tmp, env: PrometheusAccess(url.replace(
            "://", f"://{USER}:{urllib.parse.quote('url/pa:ss@w%rd-Q1', safe='')}@")),
        "authorization", basic("url/pa:ss@w%rd-Q1")),
    "bearer-from-file": Source(
        "tok-file-Q2",
        lambda url, tmp, env: PrometheusAccess.from_options(
            url, bearer_token_file=in_file(tmp, "tok-file-Q2")),
        "authorization", "Bearer tok-file-Q2"),
    "bearer-from-env": Source(
        "tok-env-Q3",
        lambda url, tmp, env: from_env(url, env, "AS_TEST_BEARER", "tok-env-Q3"),
        "authorization", "Bearer tok-env-Q3"),
    "basic-password-from-file": Source(
        "basic-file-Q4",
        lambda url, tmp, env: PrometheusAccess.from_options(
            url, basic_user=USER, basic_password_file=in_file(tmp, "basic-file-Q4")),
        "authorization", basic("basic-file-Q4")),
    "custom-header": Source(
        "hdr-literal-Q5",
        lambda url, tmp, env: PrometheusAccess.from_options(
            url, headers={"X-Api-Key": "hdr-literal-Q5"}),
        "x-api-key", "hdr-literal-Q5"),
    "custom-header-from-file": Source(
        "hdr-file-Q6",
        lambda url, tmp, env: PrometheusAccess.from_options(
            url, header_files={"X-Api-Key": in_file(tmp, "hdr-file-Q6")}),
        "x-api-key", "hdr-file-Q6"),
}


def echo(seen: Seen) -> str:
    """The request's headers, as a careless proxy would put them in an error page: the
    credentials first, so that they are within the excerpt of it that an error quotes."""
    first = sorted(seen.headers.items(), key=lambda item: item[0] not in CREDENTIAL_HEADERS)
    return "; ".join(f"{name}: {value}" for name, value in first)


FAILURES: dict[str, Callable[[Seen], Answer]] = {
    "401": lambda seen: Answer(status=401, body=f"Unauthorized, you sent {echo(seen)}".encode(),
                               headers={"Content-Type": "text/plain"}),
    "500": lambda seen: Answer(status=500, body=json.dumps(
        {"status": "error", "errorType": "internal", "error": echo(seen)}).encode()),
    "invalid-json": lambda seen: Answer(body=f"{{oops {echo(seen)}".encode()),
    "scalar-not-a-number": lambda seen: api_answer(
        {"resultType": "scalar", "result": [1700000000.0, echo(seen)]}),
    "redirect": lambda seen: Answer(status=307, headers={
        "Location": "http://127.0.0.1:1/?" + urllib.parse.quote(echo(seen))}),
}


def assert_secret_absent(source: Source, error: SourceUnavailable, access: PrometheusAccess,
                         prometheus: PrometheusSource) -> None:
    shown = "\n".join([str(error), repr(error), "".join(traceback.format_exception(error)),
                       repr(access), str(access), repr(prometheus)])
    for form in source.forms():
        assert form not in shown, f"{form!r} in {shown}"


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
def test_the_credential_reaches_the_server(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer(lambda seen: vector("3")) as server:
        access = source.build(f"{server.url}/", tmp_path, monkeypatch)
        series = PrometheusSource(access).query("up")

    assert [s.value for s in series] == [3.0]
    assert server.seen[0].headers[source.header] == source.sent


@pytest.mark.parametrize("failure", FAILURES.keys())
@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
def test_an_answer_echoing_the_credential_leaves_it_out_of_the_error(
    source: Source, failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer(FAILURES[failure]) as server:
        access = source.build(server.url, tmp_path, monkeypatch)
        prometheus = PrometheusSource(access)
        with pytest.raises(SourceUnavailable) as raised:
            prometheus.query("up")

    assert server.seen[0].headers[source.header] == source.sent
    assert "<redacted>" in str(raised.value)  # the echo reached the message, blanked
    assert_secret_absent(source, raised.value, access, prometheus)


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
def test_no_answer_leaves_the_credential_out_of_the_error(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HostileServer("trickle_body") as server:
        access = source.build(server.url, tmp_path, monkeypatch)
        prometheus = PrometheusSource(access, timeout=0.2)
        with pytest.raises(SourceUnavailable, match=r"did not answer within 0\.2 s") as late:
            prometheus.query("up")
    assert_secret_absent(source, late.value, access, prometheus)

    with pytest.raises(SourceUnavailable, match="did not answer: ConnectionError") as refused:
        prometheus.query("up")  # the server is gone: connection refused
    assert_secret_absent(source, refused.value, access, prometheus)
