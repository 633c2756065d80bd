"""Whatever the bytes of a policy file, parsing returns a Policy or problems, never raises;
names are checked against Swarm's rule, and a valid name renders into the queries as itself."""

from __future__ import annotations

import json
import re
import string
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.core.queries import render
from autoscaler.core.spec import (
    Behavior,
    MetricSpec,
    Policy,
    PolicyProblem,
    PredictiveSpec,
    ScaleUpRules,
    parse_policy,
    parse_template,
)

FILE = "policies/fuzz.yaml"
VALID: dict[str, Any] = {
    "service": "web",
    "max_replicas": 10,
    "metrics": [{"name": "rps", "query": 'r{service=~"{{services}}"}', "target": 50}],
}
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LARGE_INPUTS = settings(SETTINGS, max_examples=120)


def assert_policy_or_problems(data: bytes) -> None:
    """The contract of the parsers: a Policy (or a template's mapping), or problems that
    each name the file and say what is wrong in a line an operator can read."""
    for parse in (parse_policy, parse_template):
        result = parse(data, FILE)
        if isinstance(result, Policy | dict):
            continue
        assert isinstance(result, list) and result, result
        for problem in result:
            assert isinstance(problem, PolicyProblem)
            assert problem.file == FILE
            assert isinstance(problem.key, str)
            assert isinstance(problem.message, str) and problem.message
            assert len(str(problem)) < 1000, str(problem)


def is_swarm_name(name: str) -> bool:
    """Swarm's rule, written as a loop rather than swarmkit's regex."""
    allowed = set(string.ascii_letters + string.digits + "-_")
    return 1 <= len(name) <= 63 and set(name) <= allowed \
        and name[0].isalnum() and name[-1].isalnum()


# --- arbitrary input --------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
@example(b"\x00" * 8)
@example(b"service: web\x00\n")
@example(b"\xff\xfe\x00s\x00e")
@example(b"\xed\xa0\x80")
def test_any_bytes(data: bytes) -> None:
    assert_policy_or_problems(data)


@SETTINGS
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    assert_policy_or_problems(text.encode("utf-8", "surrogatepass"))


SCALARS = st.one_of(
    st.sampled_from([
        "~", "null", "true", "no", "on", "1", "-0", "0x1F", "0o17", "1_000", ".inf", "-.inf",
        ".nan", "1e400", "2020-02-30", "0001-01-01 00:00:00 +05:00",
        "2001-12-14t21:59:43.10-05:00", "!!binary aGVsbG8=", "!!binary '***'",
        "!!python/object:os.system {}", "!!python/name:os.system", "!!python/tuple [1]",
        "!unknown x", "!!int x", "!!float x", "!!timestamp x", "*nowhere", "<<", "=", "''",
        "'a''b'", '"\\x00"', '"\\uD800"', "`", "@", "%", "a b", "- a", "? a", ": a",
        "service", "min_replicas", "max_replicas", "strategy", "target", "threshold",
        "predictive", "metrics", "name", "query", "behavior", "scale_up", "scale_down",
        "stabilization", "period", "history", "horizon", "on_missing_metrics", "hold",
    ]),
    st.text(max_size=8).map(json.dumps),
    st.integers(300, 5000).map(lambda digits: "9" * digits),
    st.integers().map(str),
    st.floats().map(repr),
)


def _flow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    tags = st.sampled_from(["", "", "", "!!set ", "!!omap ", "!!pairs ", "!!map ", "!!seq ",
                            "!!str ", "&a ", "*a ", "!!python/object:x "])
    lists = st.lists(children, max_size=4).map(lambda items: f"[{', '.join(items)}]")
    maps = st.lists(st.tuples(children, children), max_size=4).map(
        lambda pairs: "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}")
    return st.tuples(tags, st.one_of(lists, maps)).map("".join)


FLOW = st.recursive(SCALARS, _flow, max_leaves=25)
"""YAML flow text: lists and mappings whose keys may be lists or mappings (`{[a, b]: 1}`),
tags safe and unsafe, anchors and aliases, and scalars no policy holds."""


@LARGE_INPUTS
@given(st.lists(st.tuples(SCALARS | FLOW, FLOW), max_size=6), st.booleans())
def test_yaml_ish_documents(entries: list[tuple[str, str]], as_list: bool) -> None:
    lines = [f"- {value}" if as_list else f"? {key}\n: {value}" for key, value in entries]
    assert_policy_or_problems("\n".join(lines).encode())


@LARGE_INPUTS
@given(depth=st.integers(1, 100), opener=st.sampled_from(["[", "{a: ", "- ", "? "]))
@example(depth=400, opener="[")
def test_deeply_nested_junk(depth: int, opener: str) -> None:
    closer = {"[": "]", "{a: ": "}"}.get(opener, "")
    nested = opener * depth + "1" + closer * depth
    if opener in ("- ", "? "):
        nested = "".join(f"\n{'  ' * level}{opener}" for level in range(depth)) + "1"
    assert_policy_or_problems(f"service: web\nbehavior: {nested}\n".encode())


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-10**400, 10**400)
    | st.floats() | st.text(max_size=12) | st.binary(max_size=6) | st.dates()
    | st.datetimes(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8), children,
        max_size=3),
    max_leaves=10,
)
"""Any value `yaml.safe_dump` writes, keys of a mapping not always text."""
PATHS = [
    (key,) for key in Policy.model_fields
] + [
    ("metrics", 0, key) for key in MetricSpec.model_fields
] + [
    ("behavior", direction, key) for direction in Behavior.model_fields
    for key in ScaleUpRules.model_fields
] + [
    ("predictive", key) for key in PredictiveSpec.model_fields
] + [("metrics", 0), ("behavior", "scale_up"), ("predictive",), ("colour",), (1,), (None,)]


def _set(document: dict[Any, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set `path` in `document`; the caller sets the deepest paths first, so that each still
    leads through the mappings and the list of `VALID`."""
    *parents, last = path
    container: Any = document
    for part in parents:
        container = container.setdefault(part, {}) if isinstance(container, dict) \
            else container[part]
    container[last] = value


@LARGE_INPUTS
@given(st.sampled_from(["target", "threshold", "predictive", None]),
       st.lists(st.tuples(st.sampled_from(PATHS), VALUES), max_size=4))
def test_policies_with_any_values_at_their_keys(
    strategy: str | None, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    document: dict[Any, Any] = json.loads(json.dumps(VALID))
    if strategy is not None:
        document["strategy"] = strategy
    for path, value in sorted(changes, key=lambda change: -len(change[0])):
        _set(document, path, value)
    data = yaml.safe_dump(document, sort_keys=False).encode()

    assert_policy_or_problems(data)
    policy = parse_policy(data, FILE)
    if isinstance(policy, Policy):
        assert is_swarm_name(policy.service)
        assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", m.name) for m in policy.metrics)
        assert policy.behavior.scale_up.period <= timedelta(days=365)


# --- names --------------------------------------------------------------------------------

NAME_CHARACTERS = string.ascii_letters + string.digits + "-_.:` '\"\\\n|()[]{}*+?^$é\x00"


@SETTINGS
@given(st.text(alphabet=NAME_CHARACTERS, max_size=70)
       | st.from_regex(r"[a-zA-Z0-9][-_a-zA-Z0-9]{0,70}", fullmatch=True))
@example("a" * 63)
@example("a" * 64)
@example("a.b")
@example("shop web")
@example("a" * 40 + "!")
def test_a_service_name_is_accepted_exactly_when_swarm_would(name: str) -> None:
    result = parse_policy(yaml.safe_dump({**VALID, "service": name}).encode(), FILE)

    if is_swarm_name(name):
        assert isinstance(result, Policy), result
    else:
        assert isinstance(result, list)
        assert [p.key for p in result] == ["service"]
        assert "Swarm service name" in result[0].message or "63" in result[0].message


@SETTINGS
@given(st.lists(st.from_regex(r"[a-zA-Z0-9](?:[-_a-zA-Z0-9]{0,20}[a-zA-Z0-9])?",
                              fullmatch=True), min_size=1, max_size=5, unique=True))
def test_valid_names_render_as_themselves_and_match_only_themselves(names: list[str]) -> None:
    """A name Swarm accepts holds no character special to a regex or a PromQL string, so
    `{{services}}` renders it as it is, and the alternation matches exactly the names."""
    rendered = render('r{service=~"{{services}}"}', services=names)

    alternation = rendered.removeprefix('r{service=~"').removesuffix('"}')
    assert alternation == "|".join(sorted(names))
    assert all(re.fullmatch(alternation, name) for name in names)
    assert not any(re.fullmatch(alternation, name + "x") for name in names
                   if name + "x" not in names)


@SETTINGS
@given(st.lists(st.text(alphabet=NAME_CHARACTERS.replace("\n", ""), min_size=1, max_size=8),
                min_size=1, max_size=4, unique=True))
def test_any_name_is_escaped_for_the_regex_and_the_string(names: list[str]) -> None:
    """Escaping does not rely on validation: any name, once the PromQL string is read back,
    is a regex that matches the name itself, literally."""
    rendered = render('r{service=~"{{services}}"}', services=names)

    literal = rendered.removeprefix('r{service=~"').removesuffix('"}')
    assert re.fullmatch(r'(?:[^"\\]|\\.)*', literal), "the string must stay closed"
    regex = re.sub(r"\\(.)", r"\1", literal)
    assert all(re.fullmatch(regex, name) for name in names)
