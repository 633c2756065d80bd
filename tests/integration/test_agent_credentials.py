"""The agent reaches a Prometheus that wants credentials, given as a Swarm secret would be
(a file) or by environment, and never prints them, whatever fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.http_fakes import Answer, ScriptedServer, Seen, api_answer
from tests.integration.test_agent_cli import autoscaler, by_service, write_policy

TOKEN = "s3cr3t-t0ken-4711"


def guarded(service: str) -> Callable[[Seen], Answer]:
    """Answers the service's load to the right bearer token and tenant header, 401 else."""
    def answer(seen: Seen) -> Answer:
        if seen.headers.get("authorization") != f"Bearer {TOKEN}" \
                or seen.headers.get("x-scope-orgid") != "team-a":
            return Answer(status=401, body=b"unauthorized")
        return api_answer({"resultType": "vector", "result": [
            {"metric": {"service": service}, "value": [1700000000.0, "500"]}]})
    return answer


def test_a_bearer_token_from_a_file_and_a_tenant_header_reach_prometheus_unprinted(
    tmp_path: Path, make_service: Callable[..., str],
) -> None:
    service = make_service("cred", replicas=1)
    policies = tmp_path / "policies"
    policies.mkdir()
    write_policy(policies, service)
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    with ScriptedServer(guarded(service)) as server:
        common = ("dry-run", "--once", "--policies", str(policies), "--port", "0",
                  "--prometheus-url", server.url, "--prometheus-header", "X-Scope-OrgID=team-a")
        ok = autoscaler(*common, "--prometheus-bearer-token-file", str(secret))
        refused = autoscaler(*common, env={"AUTOSCALER_PROMETHEUS_BEARER_TOKEN_ENV": "TOKEN",
                                           "AUTOSCALER_PROMETHEUS_BEARER_TOKEN_FILE": "",
                                           "TOKEN": TOKEN + "-wrong"})
        from_env = autoscaler(*common, env={"AUTOSCALER_PROMETHEUS_BEARER_TOKEN_FILE":
                                            str(secret)})
    assert ok.returncode == 0, ok.stderr
    assert by_service(ok.stdout)[service]["metrics"] == {"load": 500.0}
    assert from_env.returncode == 0, from_env.stderr
    assert by_service(from_env.stdout)[service]["metrics"] == {"load": 500.0}
    assert refused.returncode == 1
    assert by_service(refused.stdout)[service]["reason"] == "MetricsMissing"
    failures = [json.loads(line) for line in refused.stdout.splitlines()
                if '"prometheus_query_failed"' in line]
    assert failures and "401" in failures[0]["error"]
    for run in (ok, refused, from_env):
        assert TOKEN not in run.stdout + run.stderr


def test_a_missing_secret_file_is_bad_input_that_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    done = autoscaler("dry-run", "--once", "--policies", str(tmp_path), "--port", "0",
                      "--prometheus-bearer-token-file", str(missing))
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr
