"""Policy files on disk: find them, read them, and check them against each other."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.policy.spec import Policy, PolicyProblem, parse_policy

POLICY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PolicySet:
    """The policies found under some paths, keyed by file, and every problem with them."""

    policies: dict[str, Policy] = field(default_factory=dict)
    problems: list[PolicyProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def load_policies(paths: Sequence[str | Path]) -> PolicySet:
    """Read every policy file named by `paths` (files, or folders searched one level deep)."""
    problems: list[PolicyProblem] = []
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir()
                if p.suffix in POLICY_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                problems.append(PolicyProblem(
                    str(path), "", "folder holds no policy file (*.yaml or *.yml)"
                ))
            files.extend(found)
        else:
            files.append(path)
    policies: dict[str, Policy] = {}
    for file in files:
        name = str(file)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            problems.append(PolicyProblem(name, "", "no such file or folder"))
            continue
        except OSError as error:
            problems.append(PolicyProblem(name, "", f"is not a readable file ({error.strerror})"))
            continue
        parsed = parse_policy(data, name)
        if isinstance(parsed, Policy):
            policies[name] = parsed
        else:
            problems.extend(parsed)
    problems.extend(_same_service_twice(policies.items()))
    return PolicySet(policies, problems)


def _same_service_twice(policies: Iterable[tuple[str, Policy]]) -> list[PolicyProblem]:
    first_file: dict[str, str] = {}
    problems = []
    for file, policy in policies:
        if policy.service in first_file:
            problems.append(PolicyProblem(
                file, "service",
                f"service {policy.service!r} already has a policy in {first_file[policy.service]}",
            ))
        else:
            first_file[policy.service] = file
    return problems
