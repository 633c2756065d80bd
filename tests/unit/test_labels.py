"""Opt-in by service labels, with templates; hostile label values are one service's
problem, never an exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.labels import (
    ENABLE_LABEL,
    MAX_LABEL,
    MIN_LABEL,
    TEMPLATE_LABEL,
    Template,
    label_policies,
)
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
        pytest.param({"autoscaler.enable": " TRUE ", "autoscaler.min": "0",
                      "autoscaler.max": "0"}, ("target", 0, 0, "default"), id="zero-bounds"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.max": "010"},
                     ("target", 1, 10, "default"), id="leading-zero"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.max": "10000"},
                     ("target", 1, 10000, "default"), id="largest-bound"),
        pytest.param({"autoscaler.enable": "true", "autoscaler.max": "0" * 5000 + "7"},
                     ("target", 1, 7, "default"), id="zeros-beyond-what-int-reads"),
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
                     "autoscaler.max: must be a whole number from 0 to 10000 in the digits 0-9 "
                     "alone, got 'lots'", id="bad-max"),
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


WHOLE_NUMBER = "must be a whole number from 0 to 10000 in the digits 0-9 alone, got "


@pytest.mark.parametrize("label", [MIN_LABEL, MAX_LABEL])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("\u00b2", "'\u00b2'", id="superscript-two"),
        pytest.param("\u0663", "'\u0663'", id="arabic-indic-three"),
        pytest.param("\uff13", "'\uff13'", id="fullwidth-three"),
        pytest.param("1e3", "'1e3'", id="exponent"),
        pytest.param("-1", "'-1'", id="negative"),
        pytest.param("+3", "'+3'", id="plus-sign"),
        pytest.param("3.0", "'3.0'", id="decimal-point"),
        pytest.param("1_000", "'1_000'", id="underscore"),
        pytest.param(" 3", "' 3'", id="space-before"),
        pytest.param("3 ", "'3 '", id="space-after"),
        pytest.param("3\n", "'3\\n'", id="newline"),
        pytest.param("", "''", id="empty"),
        pytest.param("\x00", "'\\x00'", id="nul"),
        pytest.param("10001", "'10001'", id="over-the-range"),
        pytest.param("9" * 400, "'" + "9" * 59 + "... (400 characters)", id="400-digits"),
        pytest.param("9" * 5000, "'" + "9" * 59 + "... (5000 characters)",
                     id="more-digits-than-int-reads"),
        pytest.param("x" * 100_000, "'" + "x" * 59 + "... (100000 characters)",
                     id="very-long"),
    ],
)
def test_a_bound_must_be_ascii_digits_in_range(label: str, value: str, shown: str) -> None:
    labels = {ENABLE_LABEL: "true", MIN_LABEL: "1", MAX_LABEL: "4", label: value}

    managed, problems = label_policies([service("web", **labels)], TEMPLATES,
                                       file_services=set())

    assert managed == []
    assert [(p.key, p.message) for p in problems["web"]] == [(label, WHOLE_NUMBER + shown)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("", "is empty: name a template, or remove the label for 'default'",
                     id="empty"),
        pytest.param("cpu ", "no template 'cpu ' in the templates folder: the spaces around "
                     "the name count (known: cpu, default)", id="trailing-space"),
        pytest.param("gpu", "no template 'gpu' in the templates folder (known: cpu, default)",
                     id="unknown"),
        pytest.param("../cpu", "must be the name of a template (a file name in the templates "
                     "folder, without .yaml), got '../cpu'", id="a-path"),
        pytest.param("cpu\n", "must be the name of a template (a file name in the templates "
                     "folder, without .yaml), got 'cpu\\n'", id="newline"),
        pytest.param("\x00", "must be the name of a template (a file name in the templates "
                     "folder, without .yaml), got '\\x00'", id="nul"),
        pytest.param("c" * 256, "must be the name of a template (a file name in the templates "
                     "folder, without .yaml), got '" + "c" * 59 + "... (256 characters)",
                     id="longer-than-a-file-name"),
    ],
)
def test_the_policy_label_must_name_a_template(value: str, message: str) -> None:
    labels = {ENABLE_LABEL: "true", TEMPLATE_LABEL: value}

    managed, problems = label_policies([service("web", **labels)], TEMPLATES,
                                       file_services=set())

    assert managed == []
    assert [(p.key, p.message) for p in problems["web"]] == [(TEMPLATE_LABEL, message)]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("false", None, id="false"),
        pytest.param(" False ", None, id="false-any-case"),
        pytest.param("yes", "must be true or false, got 'yes': the service is left alone",
                     id="yes"),
        pytest.param("1", "must be true or false, got '1': the service is left alone", id="one"),
        pytest.param("", "must be true or false, got '': the service is left alone",
                     id="empty"),
    ],
)
def test_an_enable_label_neither_true_nor_false_is_a_problem(value: str,
                                                             problem: str | None) -> None:
    managed, problems = label_policies([service("web", **{ENABLE_LABEL: value})], TEMPLATES,
                                       file_services=set())

    assert managed == []
    assert [p.message for p in problems.get("web", [])] == ([problem] if problem else [])


def test_both_bounds_wrong_are_both_reported() -> None:
    labels = {ENABLE_LABEL: "true", MIN_LABEL: "\u00b2", MAX_LABEL: "-1"}

    _, problems = label_policies([service("web", **labels)], TEMPLATES, file_services=set())

    assert [p.key for p in problems["web"]] == [MIN_LABEL, MAX_LABEL]


KNOWN_LABELS = [ENABLE_LABEL, TEMPLATE_LABEL, MIN_LABEL, MAX_LABEL]
HOSTILE_VALUES = ["true", "True", "false", "default", "cpu", "gpu", "0", "3", "12", "10000",
                  "10001", "0" * 5000 + "7", "0" * 5000, "\u00b2", "\u0663", "1e3", "-1", " 3",
                  "3 ", "9" * 400, "9" * 5000, "", "\x00", "3\n", "\n", "a/b", "x" * 300]
label_values = st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(),
                         st.integers(0, 50).map(str))
label_dicts = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries({}, optional={
        ENABLE_LABEL: st.one_of(st.just("true"), label_values),
        TEMPLATE_LABEL: st.one_of(st.sampled_from(["default", "cpu"]), label_values),
        MIN_LABEL: label_values, MAX_LABEL: label_values}),
    st.dictionaries(st.one_of(st.just("name"), st.text(max_size=20)), label_values,
                    max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(others=st.lists(label_dicts, max_size=5), enable=st.sampled_from(["true", "TRUE"]))
def test_no_labels_raise_and_a_valid_service_keeps_its_policy(
    others: list[dict[str, str]], enable: str
) -> None:
    """Whatever the other services' labels, the tick reads them without an exception, and
    a service whose labels are valid still gets its policy."""
    valid = service("valid", **{ENABLE_LABEL: enable, TEMPLATE_LABEL: "cpu", MAX_LABEL: "6"})
    services = [ServiceState(name=f"other-{i}", id=str(i), version=1, replicas=1,
                             labels=labels) for i, labels in enumerate(others)]

    managed, problems = label_policies([*services[:2], valid, *services[2:]], TEMPLATES,
                                       file_services=set())

    found = {m.policy.service: m.policy for m in managed}
    assert (found["valid"].strategy, found["valid"].min_replicas,
            found["valid"].max_replicas) == ("threshold", 2, 6)
    assert "valid" not in problems
    assert set(found) | set(problems) <= {s.name for s in [*services, valid]}
    assert not set(found) & set(problems)
    assert all(p.message for found_problems in problems.values() for p in found_problems)


@settings(max_examples=300, deadline=None)
@given(value=label_values, label=st.sampled_from([MIN_LABEL, MAX_LABEL]))
def test_a_bound_is_used_exactly_when_it_is_ascii_digits_in_range(value: str,
                                                                   label: str) -> None:
    labels = {ENABLE_LABEL: "true", MIN_LABEL: "0", MAX_LABEL: "10000", label: value}

    managed, problems = label_policies([service("web", **labels)], TEMPLATES,
                                       file_services=set())

    significant = value.lstrip("0") or "0"
    if value.isascii() and value.isdecimal() and len(significant) < 9 \
            and int(significant) <= 10000:
        policy = managed[0].policy
        assert (policy.min_replicas if label == MIN_LABEL else policy.max_replicas) == int(
            significant)
    else:
        assert managed == []
        assert [p.key for p in problems["web"]] == [label]
