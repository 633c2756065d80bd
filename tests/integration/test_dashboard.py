"""The Grafana dashboard compose/grafana/autoscaler.json and its provisioning: valid JSON in a
current Grafana's schema, with a Prometheus datasource variable and a `service` variable, and
every PromQL expression in it parsed and answered (a non-empty result) by a real Prometheus
that scrapes a running agent's own /metrics, Grafana's variables replaced as Grafana would
($service by a real service, $__rate_interval by 1m, ...). No Grafana runs here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import LoadExporter, RunningPrometheus, free_port, wait_for
from tests.integration.test_alerts import (
    agent_metric_names,
    api,
    metric_names_in,
    running_agent,
    running_prometheus,
    scraping,
    write_policy,
)

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "compose" / "grafana"
DASHBOARD = GRAFANA / "autoscaler.json"
OVERRIDE = ROOT / "compose" / "grafana.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
"""Grafana's built-in variables, as a Prometheus scraped every second would get them."""


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of every panel."""
    return [(panel["title"], each) for panel in panels(board)
            for each in panel.get("targets", [])]


def substitute(promql: str, service: str) -> str:
    """The expression as Grafana sends it with `service` chosen."""
    for variable, value in GRAFANA_VARIABLES.items():
        promql = promql.replace(variable, value)
    promql = promql.replace("${service}", service).replace("$service", service)
    assert "$" not in promql, f"a variable left in {promql}"
    return promql


def test_the_dashboard_is_valid_json_for_a_current_grafana() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39  # Grafana 11 and later
    assert (board["uid"], board["title"]) == ("swarm-autoscaler", "Swarm autoscaler")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "service"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource", "prometheus")
    service = variables["service"]
    assert service["type"] == "query" and service["datasource"] == DATASOURCE
    assert service["definition"] == service["query"]["query"] == (
        "label_values(autoscaler_desired_replicas, service)")
    assert service["multi"] and service["includeAll"]

    every = list(panels(board))
    assert len({p["id"] for p in every}) == len(every), "panel ids are unique"
    drawn = [p for p in every if p["type"] != "row"]
    for panel in drawn:
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for each in panel["targets"]:
            assert each["datasource"] == DATASOURCE and each["expr"].strip(), panel["title"]
        place = panel["gridPos"]
        assert place["x"] >= 0 and place["w"] > 0 and place["x"] + place["w"] <= 24
    for one, other in combinations(every, 2):
        a, b = one["gridPos"], other["gridPos"]
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                 or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, f"{one['title']} overlaps {other['title']}"

    # The agent's row first, then one row per service, repeated over $service: its panels
    # (those below it) each filter on the service.
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [(r["title"], r.get("repeat")) for r in rows] == [
        ("Agent", None), ("$service", "service")]
    below = [p for p in board["panels"] if p["gridPos"]["y"] > rows[1]["gridPos"]["y"]]
    assert below
    for panel in drawn:
        filtered = all('service=~"$service"' in t["expr"] for t in panel["targets"])
        assert filtered == (panel in below), panel["title"]


def test_provisioning_finds_the_dashboard_and_the_stacks_prometheus() -> None:
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert (source["type"], source["url"], source["isDefault"]) == (
        "prometheus", "http://prometheus:9090", True)
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "autoscaler.yml").read_text())["providers"]
    override = yaml.safe_load(OVERRIDE.read_text())
    mounts = {c["source"]: c["target"] for c in override["services"]["grafana"]["configs"]}
    assert Path(mounts["grafana_dashboard"]).parent == Path(provider["options"]["path"])
    assert mounts["grafana_datasource"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounts["grafana_dashboards"].startswith("/etc/grafana/provisioning/dashboards/")
    for name, config in override["configs"].items():
        assert (OVERRIDE.parent / config["file"]).is_file(), name
        assert "template_driver" not in config, f"{name}: its {{{{ }}}} are not Swarm's"


def test_every_query_is_answered_from_a_running_agents_metrics(
    tmp_path: Path, make_service: Callable[..., str], prometheus: RunningPrometheus,
    load_exporter: LoadExporter,
) -> None:
    """The agent decides for a real service from a per-task metric (two series: its balance
    gauges too) on the test's Prometheus; a second Prometheus scrapes the agent alone, and
    answers every query of the dashboard with at least one series."""
    service = make_service("dash", replicas=2)
    load = 'astest_load{service=~"{{services}}"}'
    write_policy(tmp_path / "policies", service, metrics=[{
        "name": "load", "target": 100, "per_task": True,
        "query": f'label_replace({load}, "task", "a", "", "")'
                 f' or label_replace(3 * {load}, "task", "b", "", "")'}])
    load_exporter.gauge.labels(service).set(100)
    prometheus.wait_value(f'astest_load{{service="{service}"}}', 100)
    agent_port = free_port()
    board = dashboard()

    with running_agent(tmp_path / "agent.log", policies=tmp_path / "policies",
                       prometheus_url=prometheus.url, port=agent_port), \
            running_prometheus(tmp_path / "prometheus", scraping(agent_port)) as scraper:
        def ask(promql: str) -> list[dict[str, Any]]:
            return list(api(scraper.url, "/api/v1/query", query=promql)["result"])

        wait_for("the agent's decision, scraped", lambda: ask(
            f'autoscaler_desired_replicas{{service="{service}"}} == 4'), 60)
        wait_for("a few ticks, scraped", lambda: ask(
            "sum(rate(autoscaler_ticks_total[1m])) > 0"
            " and sum(rate(autoscaler_tick_duration_seconds_count[1m])) > 0"), 60)
        exposed = agent_metric_names(agent_port)
        variable = api(scraper.url, "/api/v1/label/service/values",
                       **{"match[]": "autoscaler_desired_replicas"})
        end = time.time()
        answers = {}
        for title, each in expressions(board):
            promql = substitute(each["expr"], service)
            answers[(title, each["refId"])] = ask(promql)  # a parse error raises
            if each.get("range", True):
                ranged = api(scraper.url, "/api/v1/query_range", query=promql,
                             start=str(end - 30), end=str(end), step="1")
                assert ranged["result"], f"{title} {each['refId']}: no range: {promql}"

    assert service in variable
    empty = sorted(key for key, result in answers.items() if not result)
    assert not empty, f"queries answered nothing: {empty}"
    # Every name the dashboard reads is one the agent exposes (none made up, none renamed).
    used = set().union(*(metric_names_in(each["expr"]) for _, each in expressions(board)))
    assert used <= exposed, used - exposed
    assert {"autoscaler_metric_value", "autoscaler_metric_target", "autoscaler_max_replicas",
            "autoscaler_min_replicas", "autoscaler_interval_seconds"} <= used
