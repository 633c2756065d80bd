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
        pytest.param(None, None, id="query-failed"),
    ],
)
def test_assign_values(answer: list[Series] | None, value: float | None) -> None:
    policy = build_policy(service="a", metrics=[{"name": "rps", "query": "q", "target": 1}])
    plan = plan_queries([policy])

    assert assign_values(plan, {"q": answer}) == {"a": {"rps": value}}


def test_a_per_service_answer_needs_no_service_label() -> None:
    policy = build_policy(service="a", metrics=[
        {"name": "rps", "query": 'sum(r{s="{{service}}"})', "target": 1}
    ])
    plan = plan_queries([policy])

    assert assign_values(plan, {'sum(r{s="a"})': [Series({}, 4.0)]}) == {"a": {"rps": 4.0}}
