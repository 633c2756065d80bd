"""The per-service series, written by hand in the text format, read back by the client
library's own parser exactly as the library's registry would have written them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.balance import Spread
from autoscaler.core.model import Decision, Reason
from autoscaler.core.placement import Placement
from autoscaler.runtime.service_series import FAMILIES, ServiceSeries

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ODD = 'we"b\\x\nnew'
"""A name with every character the text format escapes in a label value."""

Samples = set[tuple[str, tuple[tuple[str, str], ...], float]]


def decision(service: str = "web", **changes: object) -> Decision:
    made = Decision(service=service, strategy="target", time=NOW,
                    reason=Reason.DESIRED_WITHIN_RANGE,
                    message="", metrics={"rps": 250.0, "cpu": None}, policy_file="web.yaml",
                    dry_run=False, current_replicas=3, desired_replicas=5, applied=True,
                    min_replicas=1, max_replicas=9, targets={"rps": 100.0, "cpu": 0.5},
                    placement=Placement(running=3, nodes=2, unplaceable=1),
                    balance=Spread("rps", 3, 0.4, 0.5), imbalanced=True)
    return replace(made, **changes)


def samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_what_is_written_reads_back_as_the_librarys_registry_would_write_it() -> None:
    series = ServiceSeries()
    series.observe(decision())
    series.observe(decision(ODD, reason=Reason.SCALE_DOWN_LIMIT, desired_replicas=2))
    written = series.render().decode()

    registry = CollectorRegistry()
    expected: dict[str, Gauge | Counter] = {}
    for family in FAMILIES:
        kind = Counter if family.kind == "counter" else Gauge
        labels = ["service"] + ([family.label] if family.label else [])
        expected[family.name] = kind(family.name.removesuffix("_total"), family.help, labels,
                                     registry=registry)
    for name in ("web", ODD):
        down = name == ODD
        gauges = {"autoscaler_desired_replicas": 2 if down else 5,
                  "autoscaler_current_replicas": 3, "autoscaler_running_replicas": 3,
                  "autoscaler_service_nodes": 2, "autoscaler_unschedulable_tasks": 1,
                  "autoscaler_availability_on_one_node": 0, "autoscaler_load_cv": 0.4,
                  "autoscaler_load_hottest_share": 0.5, "autoscaler_load_imbalanced": 1,
                  "autoscaler_min_replicas": 1, "autoscaler_max_replicas": 9}
        for metric, value in gauges.items():
            expected[metric].labels(name).set(value)
        expected["autoscaler_metric_value"].labels(name, "rps").set(250.0)
        expected["autoscaler_metric_target"].labels(name, "rps").set(100.0)
        expected["autoscaler_metric_target"].labels(name, "cpu").set(0.5)
        reason = "ScaleDownLimit" if down else "DesiredWithinRange"
        expected["autoscaler_decisions_total"].labels(name, reason).inc()
        expected["autoscaler_scale_actions_total"].labels(name, "down" if down else "up").inc()
    from_library = {s for s in samples(generate_latest(registry).decode())
                    if not s[0].endswith("_created")}

    assert samples(written) == from_library
    for family in FAMILIES:
        assert f"# TYPE {family.name} {family.kind}\n" in written


def test_every_family_is_typed_before_any_service_is_seen() -> None:
    written = ServiceSeries().render().decode()
    assert [line.split()[2] for line in written.splitlines() if line.startswith("# TYPE")] \
        == [family.name for family in FAMILIES]
    assert samples(written) == set()


def test_counters_count_and_gauges_keep_their_last_value_when_a_decision_has_none() -> None:
    series = ServiceSeries()
    series.observe(decision())
    series.observe(decision(reason=Reason.DECISION_FAILED, desired_replicas=None,
                            current_replicas=None, applied=False, metrics={"rps": None}))
    found = {(name, dict(labels).get("reason")): value
             for name, labels, value in samples(series.render().decode())}
    assert found[("autoscaler_decisions_total", "DesiredWithinRange")] == 1
    assert found[("autoscaler_decisions_total", "DecisionFailed")] == 1
    assert found[("autoscaler_desired_replicas", None)] == 5, "kept from the decision before"
    assert ("autoscaler_metric_value", None) not in found, "a missing value is no sample"
    assert found[("autoscaler_scale_actions_total", None)] == 1


def test_a_forgotten_service_leaves_no_series_and_the_others_keep_theirs() -> None:
    series = ServiceSeries()
    series.observe(decision("web"))
    series.observe(decision("api"))
    series.keep_only(["api"])
    services = {dict(labels)["service"] for _, labels, _ in samples(series.render().decode())}
    assert services == {"api"}


def test_the_loads_spread_is_no_sample_once_a_decision_measures_none() -> None:
    """A service gone down to one task (or whose load or per-task metric is gone) kept the
    coefficient of variation and hottest share of its last uneven tick, for good."""
    series = ServiceSeries()
    series.observe(decision(balance=Spread("rps", 3, 0.9, 0.7), imbalanced=True))
    series.observe(decision(current_replicas=1, desired_replicas=1, balance=None,
                            imbalanced=False))
    found = {name: value for name, _, value in samples(series.render().decode())}
    assert "autoscaler_load_cv" not in found
    assert "autoscaler_load_hottest_share" not in found
    assert found["autoscaler_load_imbalanced"] == 0

    series.observe(decision(balance=Spread("rps", 2, 0.6, 0.8)))
    found = {name: value for name, _, value in samples(series.render().decode())}
    assert (found["autoscaler_load_cv"], found["autoscaler_load_hottest_share"]) == (0.6, 0.8)
