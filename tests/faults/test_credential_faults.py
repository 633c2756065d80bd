"""A password in `--prometheus-url` never reaches the agent's output: not while Prometheus
is down, not when a server echoes the credentials it was sent."""

from __future__ import annotations

import base64
import urllib.parse
import uuid
from pathlib import Path

from tests.faults.conftest import Agents, RunningPrometheus, autoscaler, free_port, write_policy
from tests.faults.fault_proxy import PrometheusFaultProxy

USER = "astest-user"


def secret_forms(password: str) -> list[str]:
    """The password as given, percent-encoded, and inside the Basic header."""
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return [password, urllib.parse.quote(password, safe=""), basic]


def assert_no_secret(text: str, password: str, where: str) -> None:
    for form in secret_forms(password):
        assert form not in text, f"the password ({form!r}) is in {where}: {text[-2000:]}"


def test_a_password_in_the_url_never_appears_while_prometheus_is_down(
    agents: Agents, tmp_path: Path,
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    url = f"http://{USER}:{password}@127.0.0.1:{free_port()}"
    write_policy(tmp_path / "nobody.yaml", f"astest_nobody_{uuid.uuid4().hex[:6]}")
    agent = agents.start("run", policies=tmp_path, prometheus_url=url, name="credentials",
                         wait_ticks=3)
    ready = agent.get("/readyz")
    metrics = agent.get("/metrics")
    agent.assert_healthy()
    code, _ = agent.stop()
    assert code == 0
    assert ready[0] == 503 and "Connection refused" in ready[1], ready
    errors = [e["error"] for e in agent.events("prometheus_query_failed")]
    assert len(errors) >= 3 and all("did not answer: ConnectionError" in e for e in errors)
    assert_no_secret(agent.text(), password, "the agent's log")
    assert_no_secret(ready[1], password, "/readyz")
    assert_no_secret(metrics[1], password, "/metrics")

    once = autoscaler("dry-run", "--once", "--policies", str(tmp_path), "--prometheus-url", url,
                      "--port", "0")
    assert once.returncode == 1
    assert "prometheus_query_failed" in once.stdout
    assert_no_secret(once.stdout + once.stderr, password, "the output of dry-run --once")


def test_a_server_that_echoes_the_credentials_is_redacted(
    prometheus: RunningPrometheus, tmp_path: Path,
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    write_policy(tmp_path / "nobody.yaml", f"astest_nobody_{uuid.uuid4().hex[:6]}")
    with PrometheusFaultProxy(prometheus.url, mode="echo_401") as proxy:
        url = proxy.url.replace("http://", f"http://{USER}:{password}@")
        once = autoscaler("dry-run", "--once", "--policies", str(tmp_path),
                          "--prometheus-url", url, "--port", "0")
    assert once.returncode == 1
    assert "refused the query: HTTP 401 Unauthorized (check the credentials)" in once.stdout
    assert "<redacted>" in once.stdout
    assert_no_secret(once.stdout + once.stderr, password, "the output of dry-run --once")
