"""Shared helpers for the pure core's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from autoscaler.core.spec import Policy, parse_policy

DEFAULT_DOCUMENT: dict[str, Any] = {
    "service": "web",
    "max_replicas": 20,
    "metrics": [{"name": "rps", "query": "q", "target": 100}],
}


def build_policy(**keys: Any) -> Policy:
    """A Policy from the default document with `keys` replacing its top-level keys.

    Goes through `parse_policy`, as an operator's file would, and fails the test on problems.
    """
    document = {**DEFAULT_DOCUMENT, **keys}
    parsed = parse_policy(yaml.safe_dump(document).encode(), "p.yaml")
    assert isinstance(parsed, Policy), [str(problem) for problem in parsed]
    return parsed


@pytest.fixture(scope="session")
def make_policy() -> Callable[..., Policy]:
    """`make_policy(max_replicas=5, behavior={...})`: see `build_policy`."""
    return build_policy
