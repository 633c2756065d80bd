"""Rendering placeholders, planning the tick's queries, and reading the answers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.model import Series
from autoscaler.core.queries import QueryUse, assign_values, plan_queries, rejection, render
from tests.unit.conftest import build_policy


@pytest.mark.parametrize(
    ("query", "services", "service", "rendered"),
    [
        pytest.param('r{service=~"{{services}}"}', ["shop-web", "a.b"], None,
                     r'r{service=~"a\\.b|shop-web"}', id="double-quoted-regex"),
        pytest.param("r{service=~'{{services}}'}", ["a.b"], None,
                     r"r{service=~'a\\.b'}", id="single-quoted-regex"),
        pytest.param("r{service=~`{{services}}`}", ["a.b"], None,
                     r"r{service=~`a\.b`}", id="raw-string-regex"),
        pytest.param('r{service="{{service}}"}', ["a.b"], "a.b",
                     'r{service="a.b"}', id="exact-match-unescaped"),
        pytest.param('r{service!~"{{service}}"}', ["a.b"], "a.b",
                     r'r{service!~"a\\.b"}', id="negative-regex-escaped"),
        pytest.param('r{s=~"({{services}})@(docker|swarm)"}', ["x_y", "w"], None,
                     'r{s=~"(w|x_y)@(docker|swarm)"}', id="inside-a-group"),
        pytest.param('r{a="{", service=~"{{services}}"}', ["a+b"], None,
                     r'r{a="{", service=~"a\\+b"}', id="brace-in-an-earlier-string"),
    ],
)
def test_render(query: str, services: list[str], service: str | None, rendered: str) -> None:
    assert render(query, services=services, service=service) == rendered


def test_plan_shares_a_query_and_splits_per_service_queries() -> None:
    shared = 'sum by (service) (r{service=~"{{services}}"})'
    own = 'sum(c{service="{{service}}"})'
    policies = [
        build_policy(service=name, metrics=[
            {"name": "rps", "query": shared, "target": 1},
            {"name": "cpu", "query": own, "target": 1},
        ])
        for name in ("a", "b")
    ]

    plan = plan_queries(policies)

    assert sorted(plan) == [
        'sum by (service) (r{service=~"a|b"})', 'sum(c{service="a"})', 'sum(c{service="b"})'
    ]
    assert [(u.policy_service, u.metric) for u in plan['sum by (service) (r{service=~"a|b"})']
            ] == [("a", "rps"), ("b", "rps")]


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        pytest.param([Series({"service": "a"}, 3.5)], 3.5, id="one-series"),
        pytest.param([Series({"service": "b"}, 3.5)], None, id="no-series-for-it"),
        pytest.param([Series({"service": "a"}, 1), Series({"service": "a", "x": "1"}, 2)],
                     None, id="several-series"),
        pytest.param([Series({"service": "a"}, math.nan)], None, id="nan"),
        pytest.param([Series({"service": "a"}, math.inf)], None, id="infinity"),
        pytest.param([Series({"service": "a"}, 0.0)], 0.0, id="a-real-zero"),
        pytest.param([Series({"service": "a"}, -50.0)], None, id="negative"),
        pytest.param(None, None, id="query-failed"),
    ],
)
def test_assign_values(answer: list[Series] | None, value: float | None) -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])
    plan = plan_queries([policy])

    assert assign_values(plan, {"q": answer}) == {"a": {"rps": value}}


@pytest.mark.parametrize(
    ("value", "note"),
    [
        pytest.param(-50.0, "rps: -50 is negative: treated as missing", id="negative"),
        pytest.param(-0.25, "rps: -0.25 is negative: treated as missing", id="negative-share"),
        pytest.param(-1e-12, "rps: -1e-12 is negative: treated as missing",
                     id="barely-negative"),
        pytest.param(-math.inf, "rps: -inf is not finite: treated as missing",
                     id="minus-infinity"),
        pytest.param(math.inf, "rps: inf is not finite: treated as missing", id="infinity"),
        pytest.param(math.nan, "rps: NaN is not a number: treated as missing", id="nan"),
    ],
)
def test_a_value_that_makes_no_sense_as_load_is_rejected_as_missing(value: float,
                                                                      note: str) -> None:
    """Rejected where the core first sees it: missing for everything downstream, with a
    note for the decision's message."""
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1},
                                                {"name": "cpu", "query": "c", "target": 1}])
    plan = plan_queries([policy])

    values = assign_values(plan, {"q": [Series({"service": "a"}, value)],
                                  "c": [Series({"service": "a"}, 0.5)]})["a"]

    assert values == {"rps": None, "cpu": 0.5}
    assert values.rejected == {"rps": note}


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        pytest.param([Series({"service": "a"}, 0.0)], 0.0, id="zero"),
        pytest.param([Series({"service": "a"}, 7.5)], 7.5, id="positive"),
    ],
)
def test_nothing_is_rejected_when_there_is_a_sane_value(
    answer: list[Series] | None, value: float | None
) -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])

    values = assign_values(plan_queries([policy]), {"q": answer})["a"]

    assert (values, values.rejected) == ({"rps": value}, {})


A, B = Series({"service": "a"}, 1.0), Series({"service": "b"}, 2.0)


@pytest.mark.parametrize(
    ("query", "keys", "answer", "why"),
    [
        pytest.param("q", {}, None, "the query failed: prometheus_query_failed says why",
                     id="query-failed"),
        pytest.param("q", {}, [], "the answer has no series", id="no-series"),
        pytest.param("q", {}, [B], 'none of its one series has service="a"',
                     id="another-service-s"),
        pytest.param("q", {}, [Series({}, 3.0), B], 'none of its 2 series has service="a"',
                     id="no-sum-by-service"),
        pytest.param("q", {"service_label": "job"}, [A], 'none of its one series has job="a"',
                     id="wrong-service-label"),
        pytest.param("q", {}, [A, A, B], 'several series have service="a", one was expected: '
                     "sum them by service", id="several-for-the-service"),
        pytest.param('r{s="{{service}}"}', {}, [A, B],
                     "the answer has 2 series, one was expected", id="several-per-service"),
        pytest.param("q", {"per_task": True}, [B], 'none of its one series has service="a"',
                     id="per-task-none-for-the-service"),
    ],
)
def test_a_missing_value_says_why(query: str, keys: dict[str, Any],
                                  answer: list[Series] | None, why: str) -> None:
    """"rps is missing" alone left the operator to guess among a typo in the metric's
    name, a missing `sum by`, a wrong `service_label` and a failed query."""
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": query, "target": 1,
                                                 **keys}])
    plan = plan_queries([policy])
    (rendered,) = plan

    values = assign_values(plan, {rendered: answer})["a"]

    assert (values, values.rejected) == ({"rps": None}, {"rps": f"rps is missing ({why})"})


def test_minus_zero_is_zero() -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])

    values = assign_values(plan_queries([policy]), {"q": [Series({"service": "a"}, -0.0)]})

    assert math.copysign(1, values["a"]["rps"] or math.nan) == 1.0
    assert values["a"].rejected == {}


def test_a_rejected_value_is_that_service_s_alone() -> None:
    shared = 'sum by (service) (r{service=~"{{services}}"})'
    policies = [build_policy(service=name, metrics=[{"name": "rps", "query": shared,
                                                     "target": 1}]) for name in ("a", "b")]
    plan = plan_queries(policies)

    values = assign_values(plan, {'sum by (service) (r{service=~"a|b"})': [
        Series({"service": "a"}, -3.0), Series({"service": "b"}, 3.0)]})

    assert values == {"a": {"rps": None}, "b": {"rps": 3.0}}
    assert (values["a"].rejected, values["b"].rejected) == (
        {"rps": "rps: -3 is negative: treated as missing"}, {})


def test_a_per_service_answer_needs_no_service_label() -> None:
    policy = build_policy(service="a", metrics=[
        {"name": "rps", "query": 'sum(r{s="{{service}}"})', "target": 1}
    ])
    plan = plan_queries([policy])

    assert assign_values(plan, {'sum(r{s="a"})': [Series({}, 4.0)]}) == {"a": {"rps": 4.0}}


def test_one_answer_read_by_two_labels() -> None:
    """Readers of the same rendered query may name their service by different labels: each
    label is indexed on its own."""
    policies = [
        build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}]),
        build_policy(service="b", metrics=[{"name": "rps", "query": "q", "target": 1,
                                            "service_label": "job"}]),
    ]
    answer = [Series({"service": "a", "job": "x"}, 1.0), Series({"job": "b"}, 2.0),
              Series({"service": "b"}, 9.0)]

    assert assign_values(plan_queries(policies), {"q": answer}) == {
        "a": {"rps": 1.0}, "b": {"rps": 2.0}}


def test_a_series_without_the_label_is_nobody_s() -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])

    values = assign_values(plan_queries([policy]), {"q": [Series({}, 1.0),
                                                         Series({"service": "a"}, 2.0)]})

    assert values == {"a": {"rps": 2.0}}


def test_several_series_for_one_service_leave_the_others_alone() -> None:
    shared = 'sum by (service) (r{service=~"{{services}}"})'
    policies = [build_policy(service=name, metrics=[{"name": "rps", "query": shared,
                                                     "target": 1}]) for name in "abc"]
    plan = plan_queries(policies)
    (rendered,) = plan

    values = assign_values(plan, {rendered: [
        Series({"service": "a"}, 1.0), Series({"service": "b"}, 2.0),
        Series({"service": "a", "x": "1"}, 3.0), Series({"service": "a", "x": "2"}, 4.0)]})

    assert values == {"a": {"rps": None}, "b": {"rps": 2.0}, "c": {"rps": None}}


def test_a_per_service_answer_with_several_series_is_missing() -> None:
    policy = build_policy(service="a", metrics=[
        {"name": "rps", "query": 'r{s="{{service}}"}', "target": 1}])

    values = assign_values(plan_queries([policy]), {'r{s="a"}': [Series({}, 1.0),
                                                                Series({}, 2.0)]})

    assert values == {"a": {"rps": None}}


def test_a_query_naming_one_service_and_listing_all() -> None:
    query = 'r{s="{{service}}"} / ignoring(s) group(r{s=~"{{services}}"})'
    policies = [build_policy(service=name, metrics=[{"name": "rps", "query": query,
                                                     "target": 1}]) for name in ("b", "a")]

    assert sorted(plan_queries(policies)) == [
        'r{s="a"} / ignoring(s) group(r{s=~"a|b"})',
        'r{s="b"} / ignoring(s) group(r{s=~"a|b"})',
    ]


class _CountingLabels(dict[str, str]):
    """Labels that count how often they are looked up."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        _CountingLabels.lookups += 1
        return super().get(key, default)


def test_matching_reads_each_series_once_not_once_per_service() -> None:
    """Linear: 300 services reading one shared answer of 300 series look each series' label
    up once (the quadratic scan looked them up 90,000 times)."""
    shared = 'sum by (service) (r{service=~"{{services}}"})'
    names = [f"s{i}" for i in range(300)]
    policies = [build_policy(service=name, metrics=[{"name": "rps", "query": shared,
                                                     "target": 1}]) for name in names]
    plan = plan_queries(policies)
    (rendered,) = plan
    answer = [Series(_CountingLabels(service=name), float(i)) for i, name in enumerate(names)]
    _CountingLabels.lookups = 0

    values = assign_values(plan, {rendered: answer})

    assert _CountingLabels.lookups == len(answer)
    assert all(values[name] == {"rps": float(i)} for i, name in enumerate(names))


def _quadratic_assign(plan: dict[str, list[QueryUse]],
                      answers: dict[str, list[Series] | None]) -> dict[str, dict[str, Any]]:
    """The earlier matching, every reader scanning every series: the reference."""
    values: dict[str, dict[str, Any]] = {}
    for rendered, uses in plan.items():
        answer = answers.get(rendered)
        for use in uses:
            found = values.setdefault(use.policy_service, {"values": {}, "rejected": {}})
            value, why = None, "the query failed: prometheus_query_failed says why"
            if answer is not None:
                matching = answer if use.service is not None else [
                    s for s in answer if s.labels.get(use.service_label) == use.policy_service]
                value = matching[0].value + 0.0 if len(matching) == 1 else None
                label = f'{use.service_label}="{use.policy_service}"'
                why = ("the answer has no series" if not answer
                       else f"the answer has {len(answer)} series, one was expected"
                       if use.service is not None
                       else f"several series have {label}, one was expected: sum them by "
                            f"{use.service_label}" if matching
                       else f"none of its one series has {label}" if len(answer) == 1
                       else f"none of its {len(answer)} series has {label}")
            problem = None if value is None else rejection(value)
            if problem is not None:
                found["rejected"][use.metric] = f"{use.metric}: {problem}: treated as missing"
                value = None
            elif value is None:
                found["rejected"][use.metric] = f"{use.metric} is missing ({why})"
            found["values"][use.metric] = value
    return values


_NAMES = st.sampled_from(["a", "b", "c", "d"])
_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0),
                    st.sampled_from([0.0, 1.0, 2.5]))
_LABELS = st.dictionaries(st.sampled_from(["service", "job", "x"]), _NAMES, max_size=3)


@settings(max_examples=150, deadline=None)
@given(
    readers=st.lists(st.tuples(_NAMES, st.sampled_from(["service", "job"]),
                               st.sampled_from(["q", 'p{s="{{service}}"}'])),
                     min_size=1, max_size=8, unique_by=lambda r: r[0]),
    answers=st.dictionaries(
        st.sampled_from(["q", 'p{s="a"}', 'p{s="b"}', 'p{s="c"}', 'p{s="d"}']),
        st.one_of(st.none(), st.lists(st.builds(Series, _LABELS, _VALUES), max_size=6))),
)
def test_matching_is_the_quadratic_scan_s(readers: list[tuple[str, str, str]],
                                          answers: dict[str, list[Series] | None]) -> None:
    """Same values, same rejected notes as every reader scanning every series."""
    policies = [build_policy(service=name, metrics=[
        {"name": "m", "query": query, "target": 1, "service_label": label},
        {"name": "n", "query": "q", "target": 1}]) for name, label, query in readers]
    plan = plan_queries(policies)

    got = assign_values(plan, answers)

    expected = _quadratic_assign(plan, answers)
    assert {name: {"values": dict(v), "rejected": v.rejected} for name, v in got.items()
            } == expected
