"""PrometheusSource against a real Prometheus that serves HTTPS only, asks for a client
certificate signed by its CA, and for basic auth (its --web.config.file). The certificates
are made for the test run, with the openssl command, in a temporary folder."""

from __future__ import annotations

import socket
import ssl
import statistics
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from autoscaler.adapters.prometheus import PrometheusAccess, PrometheusSource
from autoscaler.core.ports import SourceUnavailable
from tests.integration.conftest import PROMETHEUS_BINARY, free_port, wait_for
from tests.integration.http_fakes import HostileServer, client_sockets_to

USER = "ops"
# A password made for this test, and its bcrypt hash (cost 4) for Prometheus's web config.
PASSWORD = "tls-basic-Pa55-for-tests"
PASSWORD_HASH = "$2b$04$YxLTyPmfIrmzmCLpcsvNsuZBLmrgeIE5T701r7UGZ2jU9PTIfGvtK"
LEAF = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")


def openssl(folder: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def new_key(folder: Path, name: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key"]


def make_ca(folder: Path, name: str) -> None:
    openssl(folder, "req", "-x509", *new_key(folder, name), "-out", f"{name}.crt",
            "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def issue(folder: Path, ca: str, name: str, extensions: str) -> None:
    openssl(folder, "req", *new_key(folder, name), "-out", f"{name}.csr", "-subj", f"/CN={name}")
    (folder / f"{name}.ext").write_text(LEAF + extensions)
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
            f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
            "-extfile", f"{name}.ext")


@dataclass(frozen=True)
class TLSPrometheus:
    url: str
    folder: Path

    def file(self, name: str) -> str:
        return str(self.folder / name)

    def access(self, **changes: str | None) -> PrometheusAccess:
        """Everything it asks for: its CA, the client certificate, the user and password
        (from a file), less or other than `changes` say."""
        options: dict[str, str | None] = {
            "basic_user": USER, "basic_password_file": self.file("password"),
            "ca_bundle": self.file("ca.crt"), "client_cert": self.file("client.crt"),
            "client_key": self.file("client.key"), **changes}
        return PrometheusAccess.from_options(self.url, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSPrometheus]:
    folder = tmp_path_factory.mktemp("tls-prometheus")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    issue(folder, "ca", "server", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    issue(folder, "ca", "client", "extendedKeyUsage=clientAuth\n")
    issue(folder, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n")
    (folder / "password").write_text(PASSWORD + "\n")
    (folder / "wrong-password").write_text("not-" + PASSWORD + "\n")
    (folder / "web.yml").write_text(
        "tls_server_config:\n"
        f"  cert_file: {folder / 'server.crt'}\n"
        f"  key_file: {folder / 'server.key'}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {folder / 'ca.crt'}\n"
        f"basic_auth_users:\n  {USER}: '{PASSWORD_HASH}'\n")
    (folder / "prometheus.yml").write_text("global: {evaluation_interval: 1s}\n")
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS_BINARY, f"--config.file={folder / 'prometheus.yml'}",
         f"--web.config.file={folder / 'web.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"))
    running = TLSPrometheus(f"https://127.0.0.1:{port}", folder)

    def ready() -> bool:
        try:
            return requests.get(
                f"{running.url}/-/ready", timeout=2, verify=running.file("ca.crt"),
                cert=(running.file("client.crt"), running.file("client.key")),
                auth=(USER, PASSWORD)).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for("Prometheus with TLS to be ready", ready, 60)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def failure(access: PrometheusAccess, match: str) -> SourceUnavailable:
    source = PrometheusSource(access, timeout=5)
    with pytest.raises(SourceUnavailable, match=match) as raised:
        source.query("vector(1)")
    shown = "\n".join([str(raised.value), repr(raised.value), repr(source),
                       "".join(traceback.format_exception(raised.value))])
    assert PASSWORD not in shown
    return raised.value


def test_a_query_over_tls_with_a_client_certificate_and_basic_auth(
    tls_prometheus: TLSPrometheus,
) -> None:
    source = PrometheusSource(tls_prometheus.access())
    end = datetime.now(UTC).replace(microsecond=0)

    assert [s.value for s in source.query("vector(4.5)")] == [4.5]
    assert source.range_series("vector(2)", start=end - timedelta(seconds=2), end=end,
                               step=timedelta(seconds=1)) == [{0: 2.0, 1: 2.0, 2: 2.0}]


def test_a_wrong_password_is_refused_and_not_shown(tls_prometheus: TLSPrometheus) -> None:
    failure(tls_prometheus.access(basic_password_file=tls_prometheus.file("wrong-password")),
            r"refused the query: HTTP 401 Unauthorized \(check the credentials\)")


def test_without_a_client_certificate_there_is_no_answer(
    tls_prometheus: TLSPrometheus,
) -> None:
    failure(tls_prometheus.access(client_cert=None, client_key=None), "did not answer: ")


def test_a_client_certificate_of_another_ca_gets_no_answer(
    tls_prometheus: TLSPrometheus,
) -> None:
    failure(tls_prometheus.access(client_cert=tls_prometheus.file("stranger.crt"),
                                  client_key=tls_prometheus.file("stranger.key")),
            "did not answer: ")


def test_a_server_the_ca_bundle_does_not_vouch_for_gets_no_query(
    tls_prometheus: TLSPrometheus,
) -> None:
    error = failure(tls_prometheus.access(ca_bundle=tls_prometheus.file("other-ca.crt")),
                    "did not answer: SSLError")
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


def assert_ended_at_the_deadline(took: list[float], deadline: float) -> None:
    """Each at or after the deadline, typically just after, none long after (a busy machine
    may not run the process for a while)."""
    assert min(took) >= deadline
    assert statistics.median(took) < deadline + 0.1, took
    assert max(took) < deadline + 1.0, took


def test_a_tls_handshake_never_answered_ends_at_the_deadline(
    tls_prometheus: TLSPrometheus,
) -> None:
    with HostileServer("silent") as server:
        access = PrometheusAccess(server.url.replace("http:", "https:"),
                                  ca_bundle=tls_prometheus.file("ca.crt"))
        source = PrometheusSource(access, timeout=0.3)
        took: list[float] = []
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(SourceUnavailable, match=r"did not answer within 0\.3 s"):
                source.query("up")
            took.append(time.monotonic() - began)
        assert_ended_at_the_deadline(took, 0.3)
        assert client_sockets_to(server.port) == 0


def test_an_answer_trickled_over_tls_ends_at_the_deadline(
    tls_prometheus: TLSPrometheus,
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_prometheus.file("server.crt"), tls_prometheus.file("server.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:  # one connection at a time: the client's queries follow each other
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener is closed: the test is over
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while True:
                        tls.sendall(b" ")
                        time.sleep(0.02)
            except OSError:
                continue  # the client gave up

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    source = PrometheusSource(PrometheusAccess(f"https://127.0.0.1:{port}",
                                               ca_bundle=tls_prometheus.file("ca.crt")),
                              timeout=0.3)
    try:
        took: list[float] = []
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(SourceUnavailable, match=r"did not answer within 0\.3 s"):
                source.query("up")
            took.append(time.monotonic() - began)
        assert_ended_at_the_deadline(took, 0.3)
        assert client_sockets_to(port) == 0
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        server.join(timeout=10)
    assert not server.is_alive()
