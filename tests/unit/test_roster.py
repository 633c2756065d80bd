"""The roster: the policy files in force, set every tick, cheap when nothing changed."""

from __future__ import annotations

from autoscaler.core.labels import Template
from autoscaler.core.roster import Roster
from autoscaler.core.spec import Policy


def policy(service: str, replicas: int = 5) -> Policy:
    return Policy.model_validate({"service": service, "max_replicas": replicas,
                                  "metrics": [{"name": "rps", "query": "q", "target": 10}]})


TEMPLATE = Template("default", "templates/default.yaml",
                    {"max_replicas": 4, "metrics": [{"name": "rps", "query": "q", "target": 10}]})


def test_the_files_policies_in_the_order_of_their_files() -> None:
    roster = Roster({"b.yaml": policy("web"), "a.yaml": policy("api")}, {})

    assert [(m.file, m.policy.service, m.source) for m in roster.last] == [
        ("a.yaml", "api", "file"), ("b.yaml", "web", "file")]
    assert roster.managed({}) == (roster.last, {})


def test_the_same_mappings_again_change_nothing() -> None:
    policies, templates = {"a.yaml": policy("api"), "b.yaml": policy("web")}, {}
    roster = Roster(policies, templates)
    before = roster.last

    roster.set(policies, templates)

    assert roster.last is before


def test_new_mappings_are_taken_keeping_what_a_file_still_holds() -> None:
    api, web = policy("api"), policy("web")
    roster = Roster({"a.yaml": api, "b.yaml": web}, {})
    kept = roster.last[0]

    roster.set({"a.yaml": api, "b.yaml": policy("web", 9), "c.yaml": policy("db")},
               {"default": TEMPLATE})

    assert roster.last[0] is kept
    assert [(m.file, m.policy.service, m.policy.max_replicas) for m in roster.last] == [
        ("a.yaml", "api", 5), ("b.yaml", "web", 9), ("c.yaml", "db", 5)]

    roster.set({"c.yaml": api}, {})

    assert [(m.file, m.policy.service) for m in roster.last] == [("c.yaml", "api")]
