"""Rendering a metric's query for the managed services, and planning the queries of a tick.

`{{services}}` becomes one regex alternation of every managed service, so that a single
query serves them all; `{{service}}` makes the query run once per service. Names are
escaped for Prometheus's RE2 engine where they sit in a regex matcher (`=~`, `!~`), then for
the PromQL string they sit in. Pure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoscaler.core.model import Series
from autoscaler.core.spec import ALL_SERVICES, ONE_SERVICE, Policy

_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


@dataclass(frozen=True)
class QueryUse:
    """A rendered query and who reads its answer.

    `service` is set for a per-service query (`{{service}}`): every series of its answer
    belongs to that service. Otherwise series are assigned by `service_label`. `per_task`:
    the answer has one series per task, summed into the service's value.
    """

    policy_service: str
    metric: str
    service_label: str
    service: str | None
    per_task: bool = False


def escape_regex(name: str) -> str:
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in name)


def _escape_string(text: str, quote: str) -> str:
    if quote == "`":
        return text
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote)


def _string_contexts(query: str) -> list[tuple[int, str, bool]]:
    """(offset, quote, is_regex_matcher) of every placeholder inside a PromQL string."""
    found = []
    quote = ""
    regex = False
    index = 0
    while index < len(query):
        char = query[index]
        if quote:
            if char == "\\" and quote != "`":
                index += 2
                continue
            if char == quote:
                quote = ""
            elif query.startswith(ALL_SERVICES, index) or query.startswith(ONE_SERVICE, index):
                found.append((index, quote, regex))
        elif char in "\"'`":
            quote = char
            regex = query[:index].rstrip().endswith(("=~", "!~"))
        index += 1
    return found


def render(query: str, *, services: Sequence[str], service: str | None = None) -> str:
    """Fill the placeholders of `query` for `services` (all) and `service` (one)."""
    return _render(query, tuple(sorted(services)), service)


def _render(query: str, services: tuple[str, ...], service: str | None) -> str:
    contexts = {offset: (quote, regex) for offset, quote, regex in _string_contexts(query)}
    out = []
    index = 0
    while index < len(query):
        for placeholder in (ALL_SERVICES, ONE_SERVICE):
            if query.startswith(placeholder, index):
                quote, regex = contexts.get(index, ('"', True))
                if placeholder == ALL_SERVICES:
                    text = "|".join(escape_regex(s) for s in services)
                else:
                    text = escape_regex(service or "") if regex else (service or "")
                out.append(_escape_string(text, quote) if index in contexts else text)
                index += len(placeholder)
                break
        else:
            out.append(query[index])
            index += 1
    return "".join(out)


_render_one = functools.lru_cache(maxsize=4096)(_render)
"""`_render` of a per-service query that does not list every service: a small key, cached
(a key holding the list of a fleet would keep its long renderings alive)."""


def plan_queries(policies: Iterable[Policy]) -> dict[str, list[QueryUse]]:
    """Every distinct rendered query of a tick, with the (service, metric) pairs it serves.

    Linear in the policies' metrics (plus the length of what is rendered): a query shared by
    every service is rendered once, not once for each service that reads it.
    """
    policies = list(policies)
    services = tuple(sorted({p.service for p in policies}))
    shared: dict[str, str] = {}
    plan: dict[str, list[QueryUse]] = {}
    for policy in policies:
        for metric in policy.metrics:
            query = metric.query
            if ONE_SERVICE in query:
                rendered = (_render(query, services, policy.service) if ALL_SERVICES in query
                            else _render_one(query, (), policy.service))
                use = QueryUse(policy.service, metric.name, metric.service_label, policy.service,
                               metric.per_task)
            else:
                if query not in shared:
                    shared[query] = _render(query, services, None)
                rendered = shared[query]
                use = QueryUse(policy.service, metric.name, metric.service_label, None,
                               metric.per_task)
            plan.setdefault(rendered, []).append(use)
    return plan


class MetricValues(dict[str, float | None]):
    """One service's metric values, None marking a missing one.

    `rejected` holds, for each metric missing from the answers, the decision's note on why:
    a value that makes no sense as load ("rps: -50 is negative: treated as missing"), or no
    value at all ("rps is missing (the answer has no series)"). `tasks` holds, for each
    per-task metric with a value, the loads of the tasks it summed.
    """

    def __init__(self, values: Mapping[str, float | None] | None = None,
                 rejected: Mapping[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.rejected: dict[str, str] = dict(rejected or {})
        self.tasks: dict[str, tuple[float, ...]] = {}


def assign_values(
    plan: dict[str, list[QueryUse]], answers: dict[str, list[Series] | None]
) -> dict[str, MetricValues]:
    """Each service's metric values from the answers; None marks a missing value.

    A failed query (None), no series or several series for one service make the metric
    missing for that service: a missing value is never read as zero. A value that makes no
    sense as load (NaN, an infinity, a negative number) is rejected here, where the core
    first sees it, and is missing too, for the strategies and the forecasters alike.

    Each answer is indexed once by the service label its readers use, so a tick costs the
    number of uses plus the number of series, not their product.
    """
    values: dict[str, MetricValues] = {}
    for rendered, uses in plan.items():
        answer = answers.get(rendered)
        indexes: dict[str, dict[str, Series | None]] = {}
        groups: dict[str, dict[str, list[float]]] = {}
        for use in uses:
            found = values.get(use.policy_service)
            if found is None:
                found = values[use.policy_service] = MetricValues()
            if use.per_task:
                loads = None if answer is None else _task_loads(use, answer, groups)
                problem = None if loads is None else next(
                    (p for p in map(rejection, loads) if p is not None), None)
                value = None if loads is None or problem is not None else sum(loads) + 0.0
                if loads is not None and problem is None:
                    found.tasks[use.metric] = loads
            else:
                value = None if answer is None else _value_for(use, answer, indexes)
                problem = None if value is None else rejection(value)
            if problem is not None:
                found.rejected[use.metric] = f"{use.metric}: {problem}: treated as missing"
                value = None
            elif value is None:
                found.rejected[use.metric] = (f"{use.metric} is missing "
                                              f"({_absence(use, answer, indexes)})")
            found[use.metric] = value
    return values


def _absence(use: QueryUse, answer: list[Series] | None,
             indexes: dict[str, dict[str, Series | None]]) -> str:
    """Why `answer` gives `use` no value. Each cause has its own fix (the query's metric
    name, a `sum by`, `service_label`, Prometheus itself), and "is missing" alone left the
    operator to find which."""
    if answer is None:
        return "the query failed: prometheus_query_failed says why"
    if not answer:
        return "the answer has no series"
    if use.service is not None:
        return f"the answer has {len(answer)} series, one was expected"
    label = f'{use.service_label}="{use.policy_service}"'
    if use.policy_service in indexes.get(use.service_label, {}):
        return f"several series have {label}, one was expected: sum them by {use.service_label}"
    count = "its one series" if len(answer) == 1 else f"its {len(answer)} series"
    return f"none of {count} has {label}"


def rejection(value: float) -> str | None:
    """Why `value` cannot be a metric's load, or None when it can."""
    if math.isnan(value):
        return "NaN is not a number"
    if math.isinf(value):
        return f"{value:g} is not finite"
    if value < 0:
        return f"{value:g} is negative"
    return None


def index_by_label(answer: Iterable[Series], label: str) -> dict[str, Series | None]:
    """Each value of `label` in `answer` with its one series, or None where several series
    carry it. Series without the label are left out."""
    index: dict[str, Series | None] = {}
    for series in answer:
        key = series.labels.get(label)
        if key is None:
            continue
        index[key] = None if key in index else series
    return index


def _task_loads(use: QueryUse, answer: list[Series],
                groups: dict[str, dict[str, list[float]]]) -> tuple[float, ...] | None:
    """The loads of the service's tasks in a per-task answer; None when it has none."""
    if use.service is not None:
        loads = [series.value for series in answer]
    else:
        group = groups.get(use.service_label)
        if group is None:
            group = groups[use.service_label] = {}
            for series in answer:
                key = series.labels.get(use.service_label)
                if key is not None:
                    group.setdefault(key, []).append(series.value)
        loads = group.get(use.policy_service, [])
    return tuple(loads) if loads else None


def _value_for(use: QueryUse, answer: list[Series],
               indexes: dict[str, dict[str, Series | None]]) -> float | None:
    if use.service is not None:
        if len(answer) != 1:
            return None
        match: Series | None = answer[0]
    else:
        index = indexes.get(use.service_label)
        if index is None:
            index = indexes[use.service_label] = index_by_label(answer, use.service_label)
        match = index.get(use.policy_service)
    if match is None:
        return None
    return match.value + 0.0  # -0.0 reads as 0
