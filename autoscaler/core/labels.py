"""Opt-in by service labels: a service labelled `autoscaler.enable=true` gets the policy of a
template (`autoscaler.policy`, default `default`), with `autoscaler.min` and `autoscaler.max`
overriding the template's bounds. A policy file that names the service wins. Pure."""

from __future__ import annotations

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
    """Policies for the services that opt in by label, and the problems of those that fail."""
    managed: list[ManagedPolicy] = []
    problems: dict[str, list[PolicyProblem]] = {}
    for service in services:
        if service.name in file_services or not _enabled(service.labels):
            continue
        result = label_policy(service, templates)
        if isinstance(result, ManagedPolicy):
            managed.append(result)
        else:
            problems[service.name] = result
    return managed, problems


def _enabled(labels: Mapping[str, str]) -> bool:
    return labels.get(ENABLE_LABEL, "").strip().lower() == "true"


def label_policy(
    service: ServiceState, templates: Mapping[str, Template]
) -> ManagedPolicy | list[PolicyProblem]:
    where = f"labels of service {service.name}"
    name = service.labels.get(TEMPLATE_LABEL, DEFAULT_TEMPLATE).strip() or DEFAULT_TEMPLATE
    template = templates.get(name)
    if template is None:
        known = ", ".join(sorted(templates)) or "none"
        return [PolicyProblem(where, TEMPLATE_LABEL,
                              f"no template {name!r} in the templates folder (known: {known})")]
    document: Document = {**template.document, "service": service.name}
    problems = []
    for label, key in ((MIN_LABEL, "min_replicas"), (MAX_LABEL, "max_replicas")):
        if label not in service.labels:
            continue
        text = service.labels[label].strip()
        if not text.isdigit():
            problems.append(PolicyProblem(where, label, f"must be a whole number, got {text!r}"))
        else:
            document[key] = int(text)
    if problems:
        return problems
    checked = validate_document(document, f"{template.file} for service {service.name}")
    if isinstance(checked, list):
        return checked
    return ManagedPolicy(checked, template.file, "label")
