"""Opt-in by service labels, with templates."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.core.labels import Template, label_policies
from autoscaler.core.model import ServiceState

TEMPLATES = {
    name: Template(name, f"policies/templates/{name}.yaml", document)
    for name, document in {
        "default": {"max_replicas": 4, "metrics": [{"name": "rps", "query": "q", "target": 10}]},
        "cpu": {"min_replicas": 2, "max_replicas": 8, "strategy": "threshold",
                "metrics": [{"name": "cpu", "query": "c", "scale_up_above": 0.8,
                             "scale_down_below": 0.2}]},
    }.items()
}


def service(name: str, **labels: str) -> ServiceState:
    return ServiceState(name=name, id=name, version=1, replicas=1, labels=labels)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({"autoscaler.enable": "true"}, ("target", 1, 4, "default"), id="default"),
        pytest.param({"autoscaler.enable": "True", "autoscaler.policy": "cpu"},
                     ("threshold", 2, 8, "cpu"), id="named-template"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.min": "3",
                      "autoscaler.max": "12"}, ("target", 3, 12, "default"), id="bounds"),
    ],
)
def test_a_labelled_service_gets_its_template(labels: dict[str, str],
                                              expected: tuple[Any, ...]) -> None:
    managed, problems = label_policies([service("web", **labels)], TEMPLATES, file_services=set())

    assert problems == {}
    (entry,) = managed
    policy = entry.policy
    assert (policy.strategy, policy.min_replicas, policy.max_replicas) == expected[:3]
    assert (policy.service, entry.source) == ("web", "label")
    assert entry.file == f"policies/templates/{expected[3]}.yaml"


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        pytest.param({"autoscaler.enable": "true", "autoscaler.policy": "gpu"},
                     "no template 'gpu'", id="unknown-template"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.max": "lots"},
                     "must be a whole number, got 'lots'", id="bad-max"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.min": "9"},
                     "min_replicas (9) is greater than max_replicas (4)", id="min-over-max"),
    ],
)
def test_a_bad_label_is_a_problem_and_no_policy(labels: dict[str, str], problem: str) -> None:
    managed, problems = label_policies([service("web", **labels)], TEMPLATES, file_services=set())

    assert managed == []
    assert any(problem in str(p) for p in problems["web"])


def test_services_without_the_label_or_with_a_file_are_left_to_others() -> None:
    services = [service("plain"), service("off", **{"autoscaler.enable": "false"}),
                service("filed", **{"autoscaler.enable": "true"})]

    managed, problems = label_policies(services, TEMPLATES, file_services={"filed"})

    assert (managed, problems) == ([], {})
