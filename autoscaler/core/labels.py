"""Opt-in by service labels: a service labelled `autoscaler.enable=true` gets the policy of a
template (`autoscaler.policy`, default `default`), with `autoscaler.min` and `autoscaler.max`
overriding the template's bounds. A policy file that names the service wins. Pure.

Labels are anyone's text: a value that makes no sense is a problem of that service alone,
with a message, never an exception.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from autoscaler.core.model import ServiceState
from autoscaler.core.spec import Document, Policy, PolicyProblem, validate_document

ENABLE_LABEL = "autoscaler.enable"
TEMPLATE_LABEL = "autoscaler.policy"
MIN_LABEL = "autoscaler.min"
MAX_LABEL = "autoscaler.max"
DEFAULT_TEMPLATE = "default"
LABEL_MAX_REPLICAS = 10_000
"""The largest bound a label may set: a sane range for one Swarm service, which keeps a
mistyped or hostile number (`9` four hundred times) out of the policy."""
TEMPLATE_NAME_MAX = 255
"""A template's name is its file's name without `.yaml`: at most a file name's length."""
_DIGITS = re.compile(r"[0-9]+")
_SHOWN = 60


@dataclass(frozen=True)
class Template:
    name: str
    file: str
    document: Document


@dataclass(frozen=True)
class ManagedPolicy:
    """A policy in force, where it came from, and the file that holds its rules."""

    policy: Policy
    file: str
    source: Literal["file", "label"]


def label_policies(
    services: Iterable[ServiceState],
    templates: Mapping[str, Template],
    *,
    file_services: set[str],
) -> tuple[list[ManagedPolicy], dict[str, list[PolicyProblem]]]:
    """Policies for the services that opt in by label, and the problems of those whose labels
    make no sense (`autoscaler.enable` neither true nor false among them)."""
    managed: list[ManagedPolicy] = []
    problems: dict[str, list[PolicyProblem]] = {}
    for service in services:
        if service.name in file_services:
            continue
        enabled = _enabled(service.labels)
        if isinstance(enabled, str):
            problems[service.name] = [PolicyProblem(_where(service), ENABLE_LABEL, enabled)]
            continue
        if not enabled:
            continue
        result = label_policy(service, templates)
        if isinstance(result, ManagedPolicy):
            managed.append(result)
        else:
            problems[service.name] = result
    return managed, problems


def _enabled(labels: Mapping[str, str]) -> bool | str:
    """Whether the labels opt in, or what is wrong with `autoscaler.enable`."""
    if ENABLE_LABEL not in labels:
        return False
    value = labels[ENABLE_LABEL].strip().lower()
    if value in ("true", "false"):
        return value == "true"
    return f"must be true or false, got {_shown(labels[ENABLE_LABEL])}: the service is left alone"


def label_policy(
    service: ServiceState, templates: Mapping[str, Template]
) -> ManagedPolicy | list[PolicyProblem]:
    where = _where(service)
    found = _template(service.labels, templates)
    if isinstance(found, str):
        return [PolicyProblem(where, TEMPLATE_LABEL, found)]
    template = found
    document: Document = {**template.document, "service": service.name}
    problems = []
    for label, key in ((MIN_LABEL, "min_replicas"), (MAX_LABEL, "max_replicas")):
        if label not in service.labels:
            continue
        bound = _bound(service.labels[label])
        if isinstance(bound, str):
            problems.append(PolicyProblem(where, label, bound))
        else:
            document[key] = bound
    if problems:
        return problems
    checked = validate_document(document, f"{template.file} for service {service.name}")
    if isinstance(checked, list):
        return checked
    return ManagedPolicy(checked, template.file, "label")


def _where(service: ServiceState) -> str:
    return f"labels of service {service.name}"


def _template(labels: Mapping[str, str], templates: Mapping[str, Template]) -> Template | str:
    """The template the labels name, or what is wrong with the name."""
    if TEMPLATE_LABEL not in labels:
        name = DEFAULT_TEMPLATE
    else:
        name = labels[TEMPLATE_LABEL]
        if not name:
            return f"is empty: name a template, or remove the label for {DEFAULT_TEMPLATE!r}"
        if (len(name) > TEMPLATE_NAME_MAX or "/" in name
                or any(unicodedata.category(c) == "Cc" for c in name)):
            return (f"must be the name of a template (a file name in the templates folder, "
                    f"without .yaml), got {_shown(name)}")
    template = templates.get(name)
    if template is not None:
        return template
    known = ", ".join(sorted(templates)) or "none"
    spaces = ": the spaces around the name count" if name.strip() in templates else ""
    return f"no template {_shown(name)} in the templates folder{spaces} (known: {known})"


def _bound(text: str) -> int | str:
    """A replica bound written in a label, or what is wrong with it: ASCII digits alone, no
    sign, space, exponent or other script's digits, from 0 to `LABEL_MAX_REPLICAS`."""
    significant = text.lstrip("0") or "0"
    if _DIGITS.fullmatch(text) is None or len(significant) > len(str(LABEL_MAX_REPLICAS)) \
            or int(significant) > LABEL_MAX_REPLICAS:
        return (f"must be a whole number from 0 to {LABEL_MAX_REPLICAS} in the digits 0-9 "
                f"alone, got {_shown(text)}")
    return int(significant)


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= _SHOWN else f"{shown[:_SHOWN]}... ({len(text)} characters)"
