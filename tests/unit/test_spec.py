"""parse_policy: a policy file's bytes in, a Policy or every problem (file, key path, what) out."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from autoscaler.core.durations import parse_duration
from autoscaler.core.spec import (
    MetricSpec,
    Policy,
    PolicyProblem,
    PredictiveSpec,
    ScaleDownRules,
    ScaleUpRules,
    parse_policy,
)

FILE = "policies/web.yaml"

VALID: dict[str, Any] = {
    "service": "shop_web",
    "max_replicas": 10,
    "metrics": [{"name": "rps", "query": "sum(rate(x[1m]))", "target": 50}],
}

CONTRACT_EXAMPLE = b"""\
service: shop_web            # required: exact Swarm service name; one file per service
min_replicas: 1              # default 1; 0 allowed (see "current" below)
max_replicas: 20             # required, >= min_replicas
strategy: target             # target (default) | threshold   (predictive comes later)
tolerance: 0.1               # default 0.1
step: 1                      # default 1
metrics:                     # required, at least one
  - name: requests           # required, unique in the file
    query: 'sum by (service) (rate(http_requests_total{service=~"{{services}}"}[1m]))'
    service_label: service
    target: 50
    scale_up_above: 60
    scale_down_below: 20
behavior:
  scale_up:   {stabilization: 0s, max_step: 4, max_percent: 100, period: 15s, cooldown: 0s}
  scale_down: {stabilization: 5m, max_percent: 100, period: 15s, cooldown: 0s}
on_missing_metrics: hold
"""


def parse(document: Any) -> Policy | list[PolicyProblem]:
    return parse_policy(yaml.safe_dump(document).encode(), FILE)


def changed(**keys: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    document.update(keys)
    return document


def with_metric(**keys: Any) -> dict[str, Any]:
    metric = {"name": "rps", "query": "q", **keys}
    return changed(metrics=[{k: v for k, v in metric.items() if v is not None}])


def problems_of(result: Policy | list[PolicyProblem]) -> list[PolicyProblem]:
    assert isinstance(result, list), f"expected problems, got a valid policy {result!r}"
    assert result, "an invalid policy must report at least one problem"
    assert all(problem.file == FILE for problem in result)
    return result


# --- valid files --------------------------------------------------------------------------


def test_contract_example_validates() -> None:
    policy = parse_policy(CONTRACT_EXAMPLE, FILE)
    assert isinstance(policy, Policy), policy
    assert policy.service == "shop_web"
    assert (policy.min_replicas, policy.max_replicas, policy.step) == (1, 20, 1)
    assert policy.metrics[0].name == "requests"
    assert "{{services}}" in policy.metrics[0].query
    assert policy.behavior.scale_down.stabilization == timedelta(minutes=5)
    assert policy.behavior.scale_up.step_limits_in_force() == (4, 100.0)


def test_defaults() -> None:
    policy = parse(VALID)
    assert isinstance(policy, Policy), policy
    assert policy.min_replicas == 1
    assert policy.strategy == "target"
    assert policy.tolerance == pytest.approx(0.1)
    assert policy.step == 1
    assert policy.on_missing_metrics == "hold"
    assert policy.metrics[0].service_label == "service"
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    assert up.stabilization == timedelta(0)
    assert down.stabilization == timedelta(minutes=5)
    assert up.period == down.period == timedelta(seconds=15)
    assert up.cooldown == down.cooldown == timedelta(0)
    assert up.step_limits_in_force() == (4, 100.0)
    assert down.step_limits_in_force() == (None, 100.0)


@pytest.mark.parametrize(
    ("document", "check"),
    [
        pytest.param(changed(min_replicas=0), lambda p: p.min_replicas == 0, id="min-zero"),
        pytest.param(
            changed(min_replicas=4, max_replicas=4), lambda p: p.max_replicas == 4,
            id="min-equals-max",
        ),
        pytest.param(
            with_metric(scale_up_above=60, scale_down_below=20, target=None)
            | {"strategy": "threshold"},
            lambda p: p.strategy == "threshold", id="threshold",
        ),
        pytest.param(
            with_metric(target=50, scale_up_above=60, scale_down_below=20),
            lambda p: p.metrics[0].target == 50, id="other-strategy-keys-ignored",
        ),
        pytest.param(
            with_metric(target=50, scale_up_above=10, scale_down_below=20),
            lambda p: p.strategy == "target", id="threshold-bounds-unchecked-under-target",
        ),
        pytest.param(
            with_metric(target=0.5), lambda p: p.metrics[0].target == 0.5, id="fractional-target",
        ),
        pytest.param(
            changed(behavior={"scale_up": {"period": 30, "stabilization": "1h30m"}}),
            lambda p: (p.behavior.scale_up.period, p.behavior.scale_up.stabilization)
            == (timedelta(seconds=30), timedelta(minutes=90)),
            id="bare-seconds-and-compound-duration",
        ),
        pytest.param(
            changed(behavior={"scale_up": {"max_step": 2}}),
            lambda p: p.behavior.scale_up.step_limits_in_force() == (2, None),
            id="only-max-step-in-force",
        ),
        pytest.param(
            changed(behavior={"scale_down": {"max_percent": 50}}),
            lambda p: p.behavior.scale_down.step_limits_in_force() == (None, 50.0),
            id="only-max-percent-in-force",
        ),
        pytest.param(
            changed(behavior={"scale_down": {"cooldown": "2m"}}),
            lambda p: p.behavior.scale_down.stabilization == timedelta(minutes=5),
            id="partial-block-keeps-defaults",
        ),
        pytest.param(
            changed(metrics=[
                {"name": "rps", "query": "q", "target": 50},
                {"name": "cpu", "query": "{{service}}", "target": 0.7, "service_label": "svc"},
            ]),
            lambda p: [m.name for m in p.metrics] == ["rps", "cpu"], id="two-metrics",
        ),
        pytest.param(changed(service="a"), lambda p: p.service == "a", id="one-character"),
        pytest.param(changed(service="9lives--shop_web2"), lambda p: p.service[0] == "9",
                     id="digits-dashes-underscores"),
        pytest.param(changed(service="s" * 63), lambda p: len(p.service) == 63,
                     id="63-characters"),
        pytest.param(with_metric(target=1, name="http_requests:rate5m"),
                     lambda p: p.metrics[0].name == "http_requests:rate5m",
                     id="metric-name-with-colon"),
    ],
)
def test_valid_documents(document: dict[str, Any], check: Any) -> None:
    policy = parse(document)
    assert isinstance(policy, Policy), [str(p) for p in policy]
    assert check(policy)


def test_switching_strategy_is_one_line() -> None:
    metric = {"name": "rps", "query": "q", "target": 50, "scale_up_above": 60,
              "scale_down_below": 20}
    for strategy in ("target", "threshold"):
        policy = parse(changed(strategy=strategy, metrics=[metric]))
        assert isinstance(policy, Policy), policy
        assert policy.strategy == strategy


# --- broken files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(b"service: [\n", "is not valid YAML at line", id="malformed-yaml"),
        pytest.param(b"service: web\n  max_replicas: 3\n", "is not valid YAML", id="bad-indent"),
        pytest.param(b"a: 1\n---\nb: 2\n", "but found another document (a policy file holds "
                     "one document: remove the second '---'", id="two-documents"),
        pytest.param(b"service: web\n\tmax_replicas: 3\n", "at line 2, column 1: found "
                     "character '\\t' that cannot start any token (YAML indents with spaces, "
                     "never tabs: replace the tab with spaces)", id="a-tab"),
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"# only a comment\n", "is empty", id="only-comments"),
        pytest.param(b"- service: web\n", "must be a mapping", id="a-list"),
        pytest.param(b"just words", "must be a mapping", id="a-scalar"),
        pytest.param(b"service: caf\xe9\n", "is not UTF-8", id="latin-1"),
        pytest.param(b"\xff\xfe\x00s", "is not UTF-8", id="utf-16-bom"),
        pytest.param(b"service: web\x00\n", "is not valid YAML at line 1, column 13: "
                     "unacceptable character #x0000: special characters are not allowed",
                     id="nul"),
        pytest.param(b"service: web\nmax_replicas: 3\x07\n", "is not valid YAML at line 2, "
                     "column 16: unacceptable character #x0007", id="a-control-character"),
        pytest.param(b"x: " + b"[" * 30 + b"]" * 30, "nested more than 20 levels deep",
                     id="deeply-nested"),
        pytest.param(b"min_replicas: " + b"9" * 5000, "as int: Exceeds the limit (4300 digits)",
                     id="5000-digits"),
        pytest.param(b"service: 2020-02-30\n",
                     "cannot read '2020-02-30' as timestamp: day is out of range for month",
                     id="30-february"),
        pytest.param(b"service: !!timestamp soon\n", "cannot read 'soon' as timestamp",
                     id="tagged-timestamp"),
        pytest.param(b"service: !!bool maybe\n", "cannot read 'maybe' as bool",
                     id="tagged-bool"),
        pytest.param(b"service: !!set [a]\n", "expected a mapping, found sequence",
                     id="set-of-a-list"),
        pytest.param(b"service: !!python/object:os.system {}\n",
                     "could not determine a constructor", id="python-tag"),
    ],
)
def test_unreadable_documents(data: bytes, fragment: str) -> None:
    problems = problems_of(parse_policy(data, FILE))
    assert len(problems) == 1
    assert problems[0].key == ""
    assert fragment in problems[0].message
    assert str(problems[0]).startswith(f"{FILE}: ")
    assert "\n" not in str(problems[0])  # validate prints one line a problem


@pytest.mark.parametrize(
    ("document", "key", "fragment"),
    [
        # wrong types
        pytest.param(changed(service=3), "service", "must be text", id="service-number"),
        pytest.param(changed(max_replicas="ten"), "max_replicas", "whole number",
                     id="max-replicas-text"),
        pytest.param(changed(max_replicas=2.5), "max_replicas", "whole number",
                     id="max-replicas-fraction"),
        pytest.param(changed(min_replicas=True), "min_replicas", "whole number",
                     id="min-replicas-bool"),
        pytest.param(changed(tolerance="small"), "tolerance", "finite number",
                     id="tolerance-text"),
        pytest.param(changed(step=1.5), "step", "whole number", id="step-fraction"),
        pytest.param(changed(metrics="rps"), "metrics", "must be a list", id="metrics-text"),
        pytest.param(changed(metrics=["rps"]), "metrics[0]", "mapping", id="metric-text"),
        pytest.param(changed(behavior=[]), "behavior", "mapping", id="behavior-list"),
        pytest.param(changed(behavior={"scale_up": "fast"}), "behavior.scale_up", "mapping",
                     id="scale-up-text"),
        pytest.param(with_metric(target="fifty"), "metrics[0].target", "finite number",
                     id="target-text"),
        pytest.param(changed(strategy="magic"), "strategy", "'threshold'",
                     id="unknown-strategy"),
        pytest.param(changed(on_missing_metrics="zero"), "on_missing_metrics", "'hold'",
                     id="on-missing-not-hold"),
        pytest.param(changed(on_missing_metrics="zero"), "on_missing_metrics",
                     "the only behaviour (a missing metric is never read as zero",
                     id="on-missing-says-why"),
        pytest.param(changed(on_missing_metrics=["hold"]), "on_missing_metrics",
                     "must be 'hold', the only behaviour", id="on-missing-a-list"),
        # names: Swarm's for a service (substituted into the queries), Prometheus's for a metric
        *[pytest.param(changed(service=name), "service", "must be a Swarm service name: ASCII "
                       "letters, digits, - and _, beginning and ending with a letter or digit, "
                       f"got {name!r}", id=f"service-{case}")
          for case, name in [("space", "shop web"), ("backtick", "a`b"), ("quote", 'a"b'),
                             ("apostrophe", "a'b"), ("backslash", "a\\b"),
                             ("newline", "a\nb"), ("dot", "a.b"), ("pipe", "a|b"),
                             ("leading-dash", "-web"), ("trailing-underscore", "web_"),
                             ("non-ascii", "caf\u00e9"), ("empty", "")]],
        pytest.param(changed(service="s" * 64), "service",
                     "must be at most 63 characters, as Swarm requires of a service name, got 64",
                     id="service-64-characters"),
        pytest.param(changed(service=["a", "b"]), "service", "must be text, got a list",
                     id="service-list"),
        *[pytest.param(with_metric(target=1, name=name), "metrics[0].name",
                       "must be a name of ASCII letters, digits, _ and :, not beginning with a "
                       f"digit (as a Prometheus metric name), got {name!r}", id=f"metric-{case}")
          for case, name in [("space", "p95 latency"), ("dash", "req-rate"), ("digit", "9x"),
                             ("quote", 'a"b'), ("empty", "")]],
        pytest.param(with_metric(target=1, name={"x": 1}), "metrics[0].name",
                     "must be text, got a mapping", id="metric-name-mapping"),
        # missing keys
        pytest.param({k: v for k, v in VALID.items() if k != "service"}, "service",
                     "required key is missing", id="no-service"),
        pytest.param({k: v for k, v in VALID.items() if k != "max_replicas"}, "max_replicas",
                     "required key is missing", id="no-max-replicas"),
        pytest.param({k: v for k, v in VALID.items() if k != "metrics"}, "metrics",
                     "required key is missing", id="no-metrics"),
        pytest.param(changed(metrics=[]), "metrics", "at least one metric", id="empty-metrics"),
        pytest.param(changed(metrics=[{"name": "rps", "target": 5}]), "metrics[0].query",
                     "required key is missing", id="no-query"),
        # unknown keys, with did-you-mean for a near miss
        pytest.param(
            {**{k: v for k, v in VALID.items() if k != "max_replicas"}, "max_replica": 5},
            "max_replica", "unknown key (did you mean 'max_replicas'?)", id="max-replica-typo",
        ),
        pytest.param(changed(colour="blue"), "colour", "unknown key", id="unknown-top-level"),
        pytest.param(with_metric(target=5, targt=3), "metrics[0].targt",
                     "did you mean 'target'?", id="metric-typo"),
        pytest.param(changed(behavior={"scale_up": {"stabilisation": "1m"}}),
                     "behavior.scale_up.stabilisation", "did you mean 'stabilization'?",
                     id="behavior-typo"),
        pytest.param(changed(behavior={"scale_down": {"max_steps": 1}}),
                     "behavior.scale_down.max_steps", "did you mean 'max_step'?",
                     id="max-steps-typo"),
        pytest.param(changed(behavior={"scale_sideways": {}}), "behavior.scale_sideways",
                     "unknown key", id="unknown-direction"),
        # values out of range
        pytest.param(changed(min_replicas=7, max_replicas=5), "min_replicas",
                     "min_replicas (7) is greater than max_replicas (5)", id="min-above-max"),
        pytest.param(changed(max_replicas=0), "min_replicas",
                     "greater than max_replicas (0)", id="default-min-above-max"),
        pytest.param(changed(min_replicas=-1), "min_replicas", "at least 0",
                     id="negative-min"),
        pytest.param(changed(tolerance=-0.1), "tolerance", "at least 0",
                     id="negative-tolerance"),
        pytest.param(changed(step=0, strategy="threshold", metrics=[
            {"name": "rps", "query": "q", "scale_up_above": 2, "scale_down_below": 1}]),
            "step", "at least 1", id="zero-step"),
        pytest.param(with_metric(target=0), "metrics[0].target", "greater than 0",
                     id="zero-target"),
        pytest.param(with_metric(target=-5), "metrics[0].target", "greater than 0",
                     id="negative-target"),
        pytest.param(with_metric(target=float("inf")), "metrics[0].target", "finite",
                     id="infinite-target"),
        pytest.param(changed(behavior={"scale_up": {"max_step": 0}}),
                     "behavior.scale_up.max_step", "at least 1", id="zero-max-step"),
        pytest.param(changed(behavior={"scale_down": {"max_percent": 0}}),
                     "behavior.scale_down.max_percent", "greater than 0", id="zero-max-percent"),
        pytest.param(changed(metrics=[{"name": "rps", "query": "q", "target": 1},
                                      {"name": "rps", "query": "r", "target": 2}]),
                     "metrics[1].name", "used twice", id="duplicate-metric-name"),
        pytest.param(changed(metrics=[{"name": f"m{i}", "query": f"q{i}", "target": 1}
                                      for i in range(21)]),
                     "metrics", "must list at most 20 metrics, got 21", id="too-many-metrics"),
        # threshold bounds
        pytest.param(
            with_metric(scale_up_above=20, scale_down_below=20) | {"strategy": "threshold"},
            "metrics[0].scale_down_below", "must be below scale_up_above", id="down-equals-up",
        ),
        pytest.param(
            with_metric(scale_up_above=10, scale_down_below=30) | {"strategy": "threshold"},
            "metrics[0].scale_down_below", "must be below scale_up_above (10)", id="down-above-up",
        ),
        # keys the strategy needs
        pytest.param(with_metric(), "metrics[0].target", "required by strategy 'target'",
                     id="target-missing"),
        pytest.param(with_metric(target=50) | {"strategy": "threshold"},
                     "metrics[0].scale_up_above", "required by strategy 'threshold'",
                     id="scale-up-above-missing"),
        pytest.param(with_metric(scale_up_above=60) | {"strategy": "threshold"},
                     "metrics[0].scale_down_below", "required by strategy 'threshold'",
                     id="scale-down-below-missing"),
        # durations
        pytest.param(changed(behavior={"scale_up": {"period": "5x"}}),
                     "behavior.scale_up.period", "must be a duration such as 30s",
                     id="bad-duration"),
        pytest.param(changed(behavior={"scale_down": {"stabilization": "five minutes"}}),
                     "behavior.scale_down.stabilization", "must be a duration",
                     id="duration-in-words"),
        pytest.param(changed(behavior={"scale_down": {"cooldown": -3}}),
                     "behavior.scale_down.cooldown", "zero or more", id="negative-duration"),
    ],
)
def test_problem_key_and_message(document: dict[str, Any], key: str, fragment: str) -> None:
    problems = problems_of(parse(document))
    found = [p for p in problems if p.key == key]
    assert found, f"no problem at {key!r}: {[str(p) for p in problems]}"
    assert any(fragment in p.message for p in found), [p.message for p in found]
    assert all(str(p) == f"{FILE}: {p.key}: {p.message}" for p in found)


def test_a_long_list_of_metrics_is_one_problem_not_one_a_metric() -> None:
    """A file of aliases of one metric (a query a tick each, had it been valid) says so once."""
    text = ("service: web\nmax_replicas: 3\nmetrics:\n  - &m {name: rps, query: q, target: 1}\n"
            + "  - *m\n" * 10_000)

    problems = problems_of(parse_policy(text.encode(), FILE))

    assert [(p.key, p.message) for p in problems] == [
        ("metrics", "must list at most 20 metrics, got 10001")]


def test_every_problem_reported_at_once() -> None:
    document = {
        "service": 7,
        "min_replicas": 9,
        "max_replicas": 3,
        "strategy": "threshold",
        "metrics": [
            {"name": "rps", "query": "q", "scale_up_above": 5, "scale_down_below": 8},
            {"name": "cpu", "query": "q", "scale_up_above": 5},
        ],
        "behavior": {"scale_up": {"period": "later"}},
        "max_replica": 3,
    }
    keys = {p.key for p in problems_of(parse(document))}
    assert {
        "service",
        "min_replicas",
        "max_replica",
        "metrics[0].scale_down_below",
        "metrics[1].scale_down_below",
        "behavior.scale_up.period",
    } <= keys


def test_cross_key_checks_skip_values_of_the_wrong_type() -> None:
    problems = problems_of(parse(changed(min_replicas="many", max_replicas=2)))
    assert [p.key for p in problems] == ["min_replicas"]
    assert "whole number" in problems[0].message


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({**VALID, "strategy": "threshold", "metrics": [
            {"name": "rps", "query": "q", "target": 0, "scale_up_above": 2,
             "scale_down_below": 1}]}, id="threshold-ignores-a-zero-target"),
        pytest.param({**VALID, "step": 0, "strategy": "target"},
                     id="target-ignores-a-zero-step"),
        pytest.param({**VALID, "metrics": [{"name": "rps", "query": "q", "target": 50,
                                            "limit": 10}]},
                     id="target-ignores-a-limit-under-the-target"),
    ],
)
def test_keys_another_strategy_uses_are_allowed_and_ignored(document: dict[str, Any]) -> None:
    assert isinstance(parse_policy(yaml.safe_dump(document).encode(), "p.yaml"), Policy)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        pytest.param('up{service=~"{{servcies}}"}', "{{servcies}} is not a placeholder (did "
                     "you mean {{services}}?)", id="misspelt"),
        pytest.param('up{service=~"{{ services }}"}', "(did you mean {{services}}?)",
                     id="spaces-inside"),
        pytest.param('up{service="{{SERVICE}}"}', "(did you mean {{service}}?)",
                     id="upper-case"),
        pytest.param('up{job="{{job}}"}', "{{job}} is not a placeholder: a query may hold",
                     id="unknown-name"),
    ],
)
def test_a_query_placeholder_that_is_none_of_the_two_is_refused(query: str,
                                                                 fragment: str) -> None:
    problems = problems_of(parse(with_metric(query=query, target=10)))

    assert [p.key for p in problems] == ["metrics[0].query"]
    assert fragment in problems[0].message


@pytest.mark.parametrize("query", [
    pytest.param('up{service=~"{{services}}"}', id="all-services"),
    pytest.param('up{service="{{service}}"}', id="one-service"),
    pytest.param('up{service=~"a{2}"}', id="a-regex-repetition"),
])
def test_the_two_placeholders_and_single_braces_are_accepted(query: str) -> None:
    assert isinstance(parse(with_metric(query=query, target=10)), Policy)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        pytest.param("max_replicas: 3\nmax_replicas: 30\n", "", "appears twice",
                     id="duplicate-key"),
        pytest.param("behavior: {scale_up: {max_percent: .inf}}\n",
                     "behavior.scale_up.max_percent", "finite", id="infinite-percent"),
        pytest.param("behavior: {scale_down: {period: 99999999999d}}\n",
                     "behavior.scale_down.period", "at most 365d", id="huge-duration"),
    ],
)
def test_values_that_would_break_a_tick_are_rejected(text: str, key: str, fragment: str) -> None:
    base = "service: web\nmetrics: [{name: rps, query: q, target: 10}]\n"
    if "max_replicas" not in text:
        base += "max_replicas: 5\n"

    problems = parse_policy((base + text).encode(), "p.yaml")

    assert isinstance(problems, list)
    assert any(p.key == key and fragment in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("block", "key", "fragment"),
    [
        pytest.param({"retrain_every": "10s"}, "predictive.retrain_every", "at least 1m",
                     id="retrain-too-often"),
        pytest.param({"history": "1d", "min_history": "2d"}, "predictive.min_history",
                     "(2d) must not exceed predictive.history (1d)", id="min-history-over-history"),
        pytest.param({"startup": "10m", "horizon": "5m"}, "predictive.horizon",
                     "(5m) must be at least predictive.startup (10m)", id="horizon-under-startup"),
        pytest.param({"horizon": "30s"}, "predictive.horizon",
                     "at least predictive.startup (1m)", id="horizon-under-default-startup"),
        pytest.param({"margin_quantile": 1.5}, "predictive.margin_quantile", "", id="quantile"),
        pytest.param({"horizon": "soon"}, "predictive.horizon", "duration", id="horizon"),
        pytest.param({"max_error": 5}, "predictive.max_error", "did you mean", id="typo"),
        pytest.param({"worst_case_window": "30s"}, "predictive.worst_case_window",
                     "at least 1m", id="worst-case-window-under-a-minute"),
        pytest.param({"worst_case_window": "30d"}, "predictive.worst_case_window",
                     "(30d) must not exceed predictive.history (14d)",
                     id="worst-case-window-over-history"),
        pytest.param({"horizon": "15d"}, "predictive.horizon",
                     "(15d) must be shorter than predictive.history (14d), or the forecast "
                     "never trains", id="horizon-past-history"),
        pytest.param({"history": "1d", "min_history": "1h", "startup": "1d"},
                     "predictive.startup", "(1d) must be shorter than predictive.history (1d)",
                     id="startup-as-long-as-history"),
    ],
)
def test_predictive_block_problems(block: dict[str, Any], key: str, fragment: str) -> None:
    document = {**VALID, "strategy": "predictive", "predictive": block}

    problems = parse_policy(yaml.safe_dump(document).encode(), "p.yaml")

    assert isinstance(problems, list)
    assert any(p.key == key and fragment in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("limit", "fragment"),
    [
        pytest.param(40, "must be at least the target (50), got 40", id="under-the-target"),
        pytest.param(-1, "must be at least the target", id="negative"),
        pytest.param("high", "must be a finite number", id="not-a-number"),
        pytest.param(True, "must be a finite number", id="a-boolean"),
    ],
)
def test_a_predictive_limit_below_the_target_is_rejected(limit: object, fragment: str) -> None:
    document = {**VALID, "strategy": "predictive",
                "metrics": [{"name": "rps", "query": "q", "target": 50, "limit": limit}]}

    problems = parse_policy(yaml.safe_dump(document).encode(), "p.yaml")

    assert isinstance(problems, list)
    assert any(p.key == "metrics[0].limit" and fragment in p.message for p in problems), problems


@pytest.mark.parametrize(("written", "message"), [
    pytest.param("1e3", "must be a finite number, got '1e3' (read as text: YAML takes an "
                 "exponent for a number only with a dot and a sign, as 1.0e+3, unquoted; or "
                 "write the number in full)", id="exponent-without-dot"),
    pytest.param("1.5e3", "must be a finite number, got '1.5e3' (read as text: YAML takes an "
                 "exponent for a number only with a dot and a sign", id="exponent-without-sign"),
    pytest.param("'100'", "must be a finite number, got '100' (quoted, so read as text: leave "
                 "the quotes out)", id="quoted"),
    pytest.param("nan", "must be a finite number, got 'nan'", id="nan-is-text"),
    pytest.param("yes", "must be a finite number, got true", id="yes-is-true"),
])
def test_a_number_read_as_text_says_why(written: str, message: str) -> None:
    text = f"service: web\nmax_replicas: 9\nmetrics: [{{name: rps, query: q, target: {written}}}]\n"

    problems = parse_policy(text.encode(), "p.yaml")

    assert isinstance(problems, list)
    (found,) = [p.message for p in problems if p.key == "metrics[0].target"]
    assert found.startswith(message)


@pytest.mark.parametrize("key", ["min_replicas", "max_replicas"])
def test_a_count_beyond_any_swarm_service_is_refused(key: str) -> None:
    problems = parse_policy(yaml.safe_dump({**VALID, key: 10**20}).encode(), "p.yaml")

    assert isinstance(problems, list)
    assert "must be at most 1,000,000, got 100000000000000000000" in [
        p.message for p in problems if p.key == key]


def test_problems_come_in_the_order_of_the_file() -> None:
    """Each check reports on its own pass; the reader gets them top to bottom."""
    text = (b"service: web\nmax_replicas: 10\nschedule:\n"
            b"  - {cron: '0 0 * * *', duration: 2d, min_replicas: 2}\n"
            b"  - {cron: 'bad', duration: 1h, min_replicas: 2}\n"
            b"  - {cron: '0 0 * * *', duration: 1h, min_replicas: 20}\n"
            b"metrics: [{name: rps, query: q, target: -1}]\ntolerance: x\n")

    problems = parse_policy(text, "p.yaml")

    assert isinstance(problems, list)
    assert [p.key for p in problems] == ["schedule[0].duration", "schedule[1].cron",
                                         "schedule[2].min_replicas", "metrics[0].target",
                                         "tolerance"]


def test_problems_inside_a_block_come_in_the_order_of_the_file() -> None:
    text = (b"service: web\nmax_replicas: 10\nstrategy: predictive\npredictive:\n"
            b"  horizon: 10s\n  startup: 1m\n  margin_quantile: 5\n"
            b"metrics: [{name: rps, query: q, target: -1}]\n")

    problems = parse_policy(text, "p.yaml")

    assert isinstance(problems, list)
    assert [p.key for p in problems] == ["predictive.horizon", "predictive.margin_quantile",
                                         "metrics[0].target"]


def test_a_predictive_limit_and_the_worst_case_window() -> None:
    document = {**VALID, "strategy": "predictive",
                "metrics": [{"name": "rps", "query": "q", "target": 50, "limit": 50}]}

    policy = parse(document)
    widened = parse({**document, "predictive": {"worst_case_window": "6h"}})

    assert isinstance(policy, Policy) and isinstance(widened, Policy)
    assert policy.metrics[0].limit == 50
    assert policy.predictive.worst_case_window == timedelta(days=1)
    assert widened.predictive.worst_case_window == timedelta(hours=6)


# --- keys that are not text, numbers too large, values too large to write out -----------

BASE = "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        pytest.param("? [a, b]\n: 1\n", "", "a key must be text, got a list (line 4)",
                     id="complex-key-list"),
        pytest.param("{x: 1}: 2\n", "", "a key must be text, got a mapping (line 4)",
                     id="complex-key-mapping"),
        pytest.param("1: one\n", "", "a key must be text, got 1", id="number-key"),
        pytest.param("yes: 1\n", "", "a key must be text, got true", id="yes-is-true"),
        pytest.param("~: 1\n", "", "a key must be text, got null", id="null-key"),
        pytest.param("behavior: {scale_up: {[a]: 1}}\n", "behavior.scale_up",
                     "a key must be text, got a list (line 4)", id="in-behavior"),
        pytest.param("strategy: predictive\npredictive: {{a: 1}: 2, 7: 3}\n", "predictive",
                     "a key must be text, got 7", id="in-predictive"),
    ],
)
def test_a_key_that_is_not_text_is_a_problem_where_it_sits(text: str, key: str,
                                                           message: str) -> None:
    problems = problems_of(parse_policy((BASE + text).encode(), FILE))

    assert PolicyProblem(FILE, key, message) in problems
    assert all(p.key == key and p.message.startswith("a key must be text") for p in problems)


def test_a_metric_with_a_complex_key_and_other_problems_reports_them_all() -> None:
    text = ("service: web\nmax_replicas: 5\nmetrics:\n- {? [a]: 1, name: rps, query: q}\n"
            "- {name: rps, query: q, target: 1}\n")

    problems = problems_of(parse_policy(text.encode(), FILE))

    assert [(p.key, p.message) for p in problems] == [
        ("metrics[0]", "a key must be text, got a list (line 4)"),
        ("metrics[0].target", "required by strategy 'target'"),
        ("metrics[1].name", "metric name 'rps' is used twice"),
    ]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        pytest.param("metrics: [{name: rps, query: q, target: 1" + "0" * 400 + "}]\n",
                     "metrics[0].target", "must be a finite number", id="huge-target"),
        pytest.param("strategy: threshold\nmetrics: [{name: rps, query: q, scale_up_above: 1"
                     + "0" * 400 + ", scale_down_below: 1" + "0" * 401 + "}]\n",
                     "metrics[0].scale_up_above", "must be a finite number", id="huge-bounds"),
        pytest.param("strategy: predictive\npredictive: {history: 1" + "0" * 400 + "}\n",
                     "predictive.history", "must be at most 365d", id="huge-history"),
        pytest.param("behavior: {scale_up: {period: 1" + "0" * 400 + "}}\n",
                     "behavior.scale_up.period", "must be at most 365d", id="huge-period"),
        pytest.param("min_replicas: 1" + "0" * 400 + "\n", "min_replicas",
                     "is greater than max_replicas (5)", id="huge-min-replicas"),
    ],
)
def test_numbers_too_large_for_a_float_are_problems(text: str, key: str, fragment: str) -> None:
    base = "service: web\nmax_replicas: 5\n"
    if "metrics" not in text:
        base += "metrics: [{name: rps, query: q, target: 10}]\n"

    problems = problems_of(parse_policy((base + text).encode(), FILE))

    assert any(p.key == key and fragment in p.message for p in problems), problems
    assert all(len(p.message) < 200 for p in problems), problems


def test_a_list_of_millions_made_by_aliases_is_not_written_out() -> None:
    """Nine aliases to nine make 9**7 items from 7 lines: a message must not write them."""
    lines = ["x0: &x0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 7)]
    text = "\n".join(lines) + "\n" + BASE + "behavior: {scale_up: {period: *x6}}\n"

    problems = problems_of(parse_policy(text.encode(), FILE))

    assert PolicyProblem(FILE, "behavior.scale_up.period",
                         "must be a duration such as 30s, 5m or 1h, got a list") in problems
    assert all(len(p.message) < 200 for p in problems)


# --- the documented defaults are the models' ----------------------------------------------

README = Path(__file__).parents[2] / "policies" / "README.md"


def documented(section: str) -> dict[str, str]:
    """A policies/README.md table's default column, by key."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in text.splitlines()
            if line.startswith("| `")]
    return {cells[0].strip().strip("`"): cells[2].strip() for cells in rows}


def documented_block(key: str) -> dict[str, Any]:
    """The `key:` YAML block of policies/README.md, whose values are the defaults."""
    text = README.read_text()
    block = re.search(rf"```yaml\n({key}:\n.*?)```", text, re.DOTALL)
    assert block, f"no {key} block in {README}"
    found: dict[str, Any] = yaml.safe_load(block.group(1))[key]
    return found


@pytest.mark.parametrize(("section", "model"), [("Top level", Policy),
                                                ("`metrics[]`", MetricSpec)])
def test_the_documented_defaults_are_the_models(section: str, model: type[BaseModel]) -> None:
    defaults = documented(section)

    assert set(defaults) == set(model.model_fields)
    for key, default in defaults.items():
        field = model.model_fields[key]
        literal = re.fullmatch(r"`([^`]*)`", default)
        if default == "required":
            assert field.is_required(), key
        elif default == "none" or default.startswith("required by"):
            assert not field.is_required() and field.default is None, key
        elif literal:
            assert field.default == yaml.safe_load(literal.group(1)), key


def test_the_documented_predictive_and_behavior_blocks_are_the_defaults() -> None:
    predictive = documented_block("predictive")
    behavior = documented_block("behavior")

    assert set(predictive) == set(PredictiveSpec.model_fields)
    for key, value in predictive.items():
        default = PredictiveSpec.model_fields[key].default
        if key != "horizon":  # its default is startup plus the agent's tick
            assert default == (parse_duration(value) if isinstance(value, str) else value), key
    for rules, written in ((ScaleUpRules(), behavior["scale_up"]),
                           (ScaleDownRules(), behavior["scale_down"])):
        limits = dict(zip(("max_step", "max_percent"), rules.step_limits_in_force(),
                          strict=True))
        for key, value in written.items():
            actual = limits[key] if key in limits else getattr(rules, key)
            assert actual == (parse_duration(value) if isinstance(value, str) else value), key


# --- schedule ------------------------------------------------------------------------------

MATCH = {"cron": "0 18 * * 5", "duration": "3h", "timezone": "Europe/Paris", "min_replicas": 4}
SALE = {"start": "2026-12-24T08:00", "end": "2026-12-26T00:00", "timezone": "Europe/Paris",
        "min_replicas": 8}


def test_a_schedule_validates() -> None:
    policy = parse(changed(schedule=[{"name": "match", **MATCH, "max_replicas": 40}, SALE]))

    assert isinstance(policy, Policy)
    match, sale = policy.schedule
    assert (match.name, match.cron, match.duration, match.timezone) == (
        "match", "0 18 * * 5", timedelta(hours=3), "Europe/Paris")
    assert (match.min_replicas, match.max_replicas) == (4, 40)
    assert (sale.start, sale.end) == (datetime(2026, 12, 24, 8), datetime(2026, 12, 26))
    assert parse(VALID).schedule == []  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("windows", "policy_keys", "key", "fragment"),
    [
        pytest.param([{**MATCH, "cron": "0 18 * * 5 2030"}], {}, "schedule[0].cron",
                     "5 fields", id="cron-six-fields"),
        pytest.param([{**MATCH, "cron": "0 25 * * *"}], {}, "schedule[0].cron",
                     "not a valid cron expression", id="cron-out-of-range"),
        pytest.param([{**MATCH, "cron": "0 0 30 2 *"}], {}, "schedule[0].cron",
                     "never happens", id="cron-never"),
        pytest.param([{**MATCH, "cron": 5}], {}, "schedule[0].cron", "must be text",
                     id="cron-not-text"),
        pytest.param([{**MATCH, "timezone": "Mars/Olympus"}], {}, "schedule[0].timezone",
                     "time zone of the IANA database", id="unknown-time-zone"),
        pytest.param([{**MATCH, "timezone": "../../etc/passwd"}], {}, "schedule[0].timezone",
                     "time zone of the IANA database", id="a-path-is-no-time-zone"),
        pytest.param([{**SALE, "start": "2026-12-26T00:00", "end": "2026-12-24T08:00"}], {},
                     "schedule[0].end",
                     "(2026-12-24 08:00) must be after start (2026-12-26 00:00)",
                     id="end-before-start"),
        pytest.param([{**SALE, "end": "2026-12-24T08:00"}], {}, "schedule[0].end",
                     "must be after start", id="end-at-start"),
        pytest.param([{**SALE, "start": "2026-12-24T09:00-01:00", "end": "2026-12-24T09:30",
                       "timezone": "UTC"}], {}, "schedule[0].end", "must be after start",
                     id="end-before-start-across-offsets"),
        pytest.param([{**SALE, "start": "Christmas"}], {}, "schedule[0].start",
                     "must be a date and time such as 2026-12-24T08:00", id="start-not-a-time"),
        pytest.param([{**SALE, "end": "1999-12-31T00:00"}], {}, "schedule[0].end",
                     "between the years 2000 and 9998", id="end-out-of-range"),
        pytest.param([{**SALE, "end": None}], {}, "schedule[0].end", "required with start",
                     id="start-without-end"),
        pytest.param([{**MATCH, "duration": "0s"}], {}, "schedule[0].duration",
                     "must be more than 0s", id="duration-zero"),
        pytest.param([{**MATCH, "duration": "8d"}], {}, "schedule[0].duration",
                     "(8d) must not exceed the time between two starts of '0 18 * * 5' (7d)",
                     id="duration-over-the-period"),
        pytest.param([{**MATCH, "cron": "*/10 * * * *", "duration": "11m"}], {},
                     "schedule[0].duration", "(10m)", id="duration-over-a-short-period"),
        pytest.param([{**MATCH, "cron": "0 0 29 1,2 *", "duration": "60d"}], {},
                     "schedule[0].duration", "(31d)", id="duration-over-a-leap-years-period"),
        pytest.param([{**MATCH, "duration": None}], {}, "schedule[0].duration",
                     "required with cron", id="cron-without-duration"),
        pytest.param([{**SALE, "duration": "1h"}], {}, "schedule[0].duration", "only with cron",
                     id="duration-without-cron"),
        pytest.param([{**MATCH, "start": "2026-12-24T08:00"}], {}, "schedule[0]",
                     "not both", id="cron-and-start"),
        pytest.param([{"min_replicas": 3}], {}, "schedule[0]", "needs either cron",
                     id="neither-cron-nor-start"),
        pytest.param([{**MATCH, "min_replicas": None}], {}, "schedule[0]",
                     "sets neither min_replicas nor max_replicas", id="no-bound"),
        pytest.param([{**MATCH, "min_replicas": 12}], {"max_replicas": 10},
                     "schedule[0].min_replicas",
                     "(12) is greater than the max_replicas in force during the window (10, "
                     "the policy's", id="min-above-the-policys-max"),
        pytest.param([{**MATCH, "min_replicas": 12, "max_replicas": 11}], {},
                     "schedule[0].min_replicas", "(11, the window's)",
                     id="min-above-the-windows-max"),
        pytest.param([{**MATCH, "min_replicas": None, "max_replicas": 2}], {"min_replicas": 3},
                     "schedule[0].max_replicas", "(2) is below min_replicas (3)",
                     id="max-below-the-policys-min"),
        pytest.param([{**MATCH, "min_replicas": -1}], {}, "schedule[0].min_replicas",
                     "must be at least 0", id="negative-min"),
        pytest.param([{**MATCH, "name": "a"}, {**SALE, "name": "a"}], {}, "schedule[1].name",
                     "window name 'a' is used twice", id="name-twice"),
        pytest.param([{**MATCH, "name": "x" * 61}], {}, "schedule[0].name",
                     "must be 1 to 60 characters", id="name-too-long"),
        pytest.param([{**MATCH, "timzone": "UTC"}], {}, "schedule[0].timzone",
                     "unknown key (did you mean 'timezone'?)", id="typo"),
        pytest.param([MATCH] * 51, {}, "schedule", "must list at most 50 windows, got 51",
                     id="too-many"),
        pytest.param(MATCH, {}, "schedule", "must be a list", id="not-a-list"),
        pytest.param(["0 18 * * 5"], {}, "schedule[0]", "must be a mapping",
                     id="an-entry-not-a-mapping"),
    ],
)
def test_schedule_problems(windows: Any, policy_keys: dict[str, Any], key: str,
                           fragment: str) -> None:
    problems = problems_of(parse(changed(schedule=windows, **policy_keys)))

    assert any(p.key == key and fragment in p.message for p in problems), problems
    assert all(len(p.message) < 200 for p in problems), problems


def test_a_window_min_below_the_policys_is_allowed() -> None:
    """It changes nothing (a window never lowers the floor), as a template's window does
    for a service whose label raises min_replicas."""
    policy = parse(changed(min_replicas=3, schedule=[{**MATCH, "min_replicas": 1}]))

    assert isinstance(policy, Policy)
