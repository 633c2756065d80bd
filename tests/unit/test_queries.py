"""Rendering placeholders, planning the tick's queries, and reading the answers."""

from __future__ import annotations

import math

import pytest

from autoscaler.core.model import Series
from autoscaler.core.queries import assign_values, plan_queries, render
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
        pytest.param([], None, id="no-series"),
        pytest.param(None, None, id="query-failed"),
        pytest.param([Series({"service": "a"}, 0.0)], 0.0, id="zero"),
        pytest.param([Series({"service": "a"}, 7.5)], 7.5, id="positive"),
    ],
)
def test_nothing_is_rejected_when_there_is_no_value_or_a_sane_one(
    answer: list[Series] | None, value: float | None
) -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])

    values = assign_values(plan_queries([policy]), {"q": answer})["a"]

    assert (values, values.rejected) == ({"rps": value}, {})


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
