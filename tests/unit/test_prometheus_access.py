"""PrometheusAccess: credentials taken from the URL, files and the environment, and never
shown, in a repr, a str or an error message."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path

import pytest

from autoscaler.adapters.prometheus import PrometheusAccess, PrometheusSource, read_secret

SECRET = "Zq8-secret-W3x"


def test_a_user_and_password_in_the_url_move_into_basic_auth() -> None:
    access = PrometheusAccess("https://ops:p%40ss%3Aw%2Frd@prom.example:9090/prefix/")

    assert access.url == "https://prom.example:9090/prefix"
    assert (access.basic_user, access.basic_password) == ("ops", "p@ss:w/rd")
    assert access.authorization() == "Basic " + base64.b64encode(b"ops:p@ss:w/rd").decode()
    assert "p%40ss" not in repr(access) and "p@ss" not in repr(access)


def test_a_user_alone_in_the_url_is_basic_auth_with_an_empty_password() -> None:
    access = PrometheusAccess("http://ops@prom:9090")

    assert (access.url, access.basic_user, access.basic_password) == ("http://prom:9090", "ops", "")
    assert access.redact("ops and more") == "ops and more"  # a user name is no secret


def test_a_bearer_token_and_headers_are_sent_as_given() -> None:
    access = PrometheusAccess("http://prom:9090", bearer_token=SECRET,
                              headers=(("X-Scope-OrgID", "tenant-1"),))

    assert access.authorization() == f"Bearer {SECRET}"
    assert access.headers == (("X-Scope-OrgID", "tenant-1"),)


def test_the_repr_and_str_show_where_and_who_never_a_secret() -> None:
    access = PrometheusAccess("https://ops:" + SECRET + "@prom:9090", ca_bundle="/run/ca.pem",
                              client_cert="/run/c.pem", client_key="/run/k.pem",
                              headers=(("X-Api-Key", "hdr-" + SECRET),))

    for shown in (repr(access), str(access), f"{access}", repr(PrometheusSource(access))):
        assert SECRET not in shown
        assert "'ops'" in shown and "/run/ca.pem" in shown and "'X-Api-Key'" in shown
        assert "basic_password=<redacted>" in shown
    assert repr(PrometheusAccess("http://prom:9090")).count("None") == 6


def test_redact_blanks_every_form_a_secret_is_sent_in() -> None:
    access = PrometheusAccess("http://ops:a%2Fb" + SECRET + "@prom:9090",
                              headers=(("X-Api-Key", "key " + SECRET),))
    basic = base64.b64encode(f"ops:a/b{SECRET}".encode()).decode()

    text = access.redact(f"a/b{SECRET} a%2Fb{SECRET} {basic} key {SECRET} key+{SECRET}")

    assert SECRET not in text and basic not in text
    assert text.count("<redacted>") == 5


@pytest.mark.parametrize("keys,message", [
    ({"url": "ftp://prom"}, "must be http"),
    ({"url": "prom:9090"}, "must be http"),
    ({"url": "http://prom:9090/?token=" + SECRET}, "query string"),
    ({"url": "http://prom:9090/#" + SECRET}, "fragment"),
    ({"url": "http://ops:" + SECRET + "/x@prom:9090"}, "percent-encode"),
    ({"url": "http://prom:" + SECRET}, "port"),
    ({"url": "http://ops:" + SECRET + "@prom", "basic_user": "ops"}, "give one of them"),
    ({"basic_password": SECRET}, "needs basic_user"),
    ({"basic_user": "ops", "basic_password": SECRET, "bearer_token": SECRET}, "not both"),
    ({"bearer_token": ""}, "empty"),
    ({"headers": (("X-Api-Key", SECRET + "\r\nX-Evil: 1"),)}, "line break"),
    ({"headers": (("X-Api-Key", f" {SECRET}"),)}, "surrounding spaces"),
    ({"headers": (("Bad Name", SECRET),)}, "not an HTTP header name"),
    ({"headers": (("X-A", SECRET), ("x-a", SECRET))}, "twice"),
    ({"headers": (("Authorization", SECRET),), "bearer_token": SECRET}, "Authorization"),
    ({"client_key": "/k.pem"}, "needs client_cert"),
    ({"ca_bundle": "/ca.pem"}, "needs an https:// URL"),
    ({"bearer_token": SECRET + "\u20ac"}, "the bearer token has a character an HTTP header"),
    ({"basic_user": "ops", "basic_password": SECRET + "\u20ac"}, "basic_password has a"),
    ({"headers": (("X-Scope-OrgID", SECRET + "\u20ac"),)}, "header X-Scope-OrgID has a"),
])
def test_a_contradiction_is_refused_naming_no_secret(keys: dict[str, object],
                                                     message: str) -> None:
    arguments: dict[str, object] = {"url": "http://prom:9090", **keys}
    with pytest.raises(ValueError, match=message) as raised:
        PrometheusAccess(**arguments)  # type: ignore[arg-type]
    assert SECRET not in str(raised.value)


def test_it_is_frozen_and_compares_by_value() -> None:
    access = PrometheusAccess("http://ops:pw@prom:9090")

    with pytest.raises(dataclasses.FrozenInstanceError):
        access.url = "http://elsewhere"  # type: ignore[misc]
    assert access == PrometheusAccess("http://prom:9090", basic_user="ops", basic_password="pw")


def test_a_secret_is_read_from_a_file_or_the_environment_without_its_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text(SECRET + "\n")
    monkeypatch.setenv("AS_TEST_TOKEN", f"  {SECRET}\n")

    assert read_secret("the token", file=tmp_path / "token") == SECRET
    assert read_secret("the token", env="AS_TEST_TOKEN") == SECRET
    assert read_secret("the token") is None


@pytest.mark.parametrize("source,message", [
    ({"file": "missing"}, r"the token: cannot read .*missing: No such file"),
    ({"file": "empty"}, r"the token: the file .*empty is empty"),
    ({"file": "binary"}, "not UTF-8 text"),
    ({"env": "AS_TEST_UNSET"}, "the environment variable AS_TEST_UNSET is not set"),
    ({"env": "AS_TEST_BLANK"}, "the environment variable AS_TEST_BLANK is empty"),
    ({"file": "empty", "env": "AS_TEST_BLANK"}, "not both"),
    ({"file": "fifo"}, r"the token: .*fifo is not a regular file"),
    ({"file": "huge"}, r"the token: .*huge is over 65,536 bytes"),
])
def test_a_secret_that_cannot_be_read_is_named_by_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: dict[str, str], message: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff" + SECRET.encode())
    os.mkfifo(tmp_path / "fifo")  # reading it would block for ever
    (tmp_path / "huge").write_bytes(b"x" * 65537)
    monkeypatch.setenv("AS_TEST_BLANK", " ")
    monkeypatch.delenv("AS_TEST_UNSET", raising=False)
    where = {key: str(tmp_path / value) if key == "file" else value
             for key, value in source.items()}

    with pytest.raises(ValueError, match=message) as raised:
        read_secret("the token", **where)
    assert SECRET not in str(raised.value)


def test_from_options_reads_every_secret_from_where_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "password").write_text("pw-" + SECRET + "\n")
    (tmp_path / "key").write_text("hdr-" + SECRET + "\n")
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    monkeypatch.setenv("AS_TEST_TOKEN", "tok-" + SECRET)

    basic = PrometheusAccess.from_options(
        "https://prom:9090", basic_user="ops", basic_password_file=str(tmp_path / "password"),
        ca_bundle=str(tmp_path / "ca.pem"), client_cert=str(tmp_path / "cert.pem"),
        client_key=str(tmp_path / "key.pem"), headers={"X-Scope-OrgID": "t1"},
        header_files={"X-Api-Key": str(tmp_path / "key")})
    bearer = PrometheusAccess.from_options("http://prom:9090", bearer_token_env="AS_TEST_TOKEN")

    assert basic.basic_password == "pw-" + SECRET
    assert basic.headers == (("X-Scope-OrgID", "t1"), ("X-Api-Key", "hdr-" + SECRET))
    assert basic.tls_files() == tuple(str(tmp_path / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    assert bearer.bearer_token == "tok-" + SECRET
    with pytest.raises(ValueError, match=r"the CA bundle .*absent.pem cannot be read"):
        PrometheusAccess.from_options("https://prom:9090", ca_bundle=str(tmp_path / "absent.pem"))
    with pytest.raises(ValueError, match="both as a value and as a file"):
        PrometheusAccess.from_options("http://prom:9090", headers={"X-Api-Key": "v"},
                                      header_files={"X-Api-Key": str(tmp_path / "key")})


def test_a_timeout_must_be_a_positive_number_of_seconds() -> None:
    for timeout in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            PrometheusSource("http://prom:9090", timeout=timeout)


def test_header_files_come_from_their_variable_as_headers_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from autoscaler.prometheus_options import access, add_options

    (tmp_path / "tenant").write_text("tenant-7\n")
    (tmp_path / "key").write_text(SECRET)
    monkeypatch.setenv("AUTOSCALER_PROMETHEUS_HEADER_FILES",
                       f"X-Scope-OrgID={tmp_path / 'tenant'}\nX-Api-Key={tmp_path / 'key'}\n")
    parser = argparse.ArgumentParser()
    add_options(parser)

    from_environment = access("http://prom:9090", parser.parse_args([]), environment=True)
    flag_wins = access("http://prom:9090", parser.parse_args(
        ["--prometheus-header-file", f"X-Scope-OrgID={tmp_path / 'tenant'}"]), environment=True)

    assert dict(from_environment.headers) == {"X-Scope-OrgID": "tenant-7", "X-Api-Key": SECRET}
    assert dict(flag_wins.headers) == {"X-Scope-OrgID": "tenant-7"}
