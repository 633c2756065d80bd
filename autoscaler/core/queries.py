"""Rendering a metric's query for the managed services, and planning the queries of a tick.

`{{services}}` becomes one regex alternation of every managed service, so that a single
query serves them all; `{{service}}` makes the query run once per service. Names are
escaped for Prometheus's RE2 engine where they sit in a regex matcher (`=~`, `!~`), then for
the PromQL string they sit in. Pure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.core.model import Series
from autoscaler.core.spec import Policy

ALL_SERVICES = "{{services}}"
ONE_SERVICE = "{{service}}"
_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


@dataclass(frozen=True)
class QueryUse:
    """A rendered query and who reads its answer.

    `service` is set for a per-service query (`{{service}}`): every series of its answer
    belongs to that service. Otherwise series are assigned by `service_label`.
    """

    policy_service: str
    metric: str
    service_label: str
    service: str | None


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


@functools.lru_cache(maxsize=4096)
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


def plan_queries(policies: Iterable[Policy]) -> dict[str, list[QueryUse]]:
    """Every distinct rendered query of a tick, with the (service, metric) pairs it serves."""
    policies = list(policies)
    services = sorted({p.service for p in policies})
    plan: dict[str, list[QueryUse]] = {}
    for policy in policies:
        for metric in policy.metrics:
            if ONE_SERVICE in metric.query:
                rendered = render(metric.query, services=services, service=policy.service)
                use = QueryUse(policy.service, metric.name, metric.service_label, policy.service)
            else:
                rendered = render(metric.query, services=services)
                use = QueryUse(policy.service, metric.name, metric.service_label, None)
            plan.setdefault(rendered, []).append(use)
    return plan


def assign_values(
    plan: dict[str, list[QueryUse]], answers: dict[str, list[Series] | None]
) -> dict[str, dict[str, float | None]]:
    """Each service's metric values from the answers; None marks a missing value.

    A failed query (None), no series, several series for one service, NaN or an infinity
    all make the metric missing for that service: a missing value is never read as zero.
    """
    values: dict[str, dict[str, float | None]] = {}
    for rendered, uses in plan.items():
        answer = answers.get(rendered)
        for use in uses:
            values.setdefault(use.policy_service, {})[use.metric] = (
                None if answer is None else _value_for(use, answer)
            )
    return values


def _value_for(use: QueryUse, answer: list[Series]) -> float | None:
    if use.service is not None:
        matching = answer
    else:
        matching = [s for s in answer if s.labels.get(use.service_label) == use.policy_service]
    if len(matching) != 1 or not math.isfinite(matching[0].value):
        return None
    return matching[0].value
