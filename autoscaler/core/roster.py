"""The policies in force: the files', and those the services' labels make from templates."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.core.labels import ManagedPolicy, Template, label_policies
from autoscaler.core.model import ServiceState
from autoscaler.core.spec import Policy, PolicyProblem


class Roster:
    """The policy files and label templates in force, and the policies of the last tick."""

    def __init__(self, policies: Mapping[str, Policy], templates: Mapping[str, Template]
                 ) -> None:
        self._templates: dict[str, Template] = {}
        self._from_files: list[ManagedPolicy] = []
        self._file_services: set[str] = set()
        self._last: list[ManagedPolicy] | None = None
        self.set(policies, templates)

    def set(self, policies: Mapping[str, Policy], templates: Mapping[str, Template]) -> None:
        """Use these policy files (file -> policy) and label templates from the next tick on."""
        self._templates = dict(templates)
        self._from_files = [ManagedPolicy(policy, file, "file")
                            for file, policy in sorted(policies.items())]
        self._file_services = {m.policy.service for m in self._from_files}

    def managed(self, services: Mapping[str, ServiceState]
                ) -> tuple[list[ManagedPolicy], dict[str, list[PolicyProblem]]]:
        """The policies in force for these services (a file's wins over a label's), and the
        problems of the services whose labels make no valid policy."""
        managed = list(self._from_files)
        problems: dict[str, list[PolicyProblem]] = {}
        if self._templates:
            from_labels, problems = label_policies(
                services.values(), self._templates, file_services=self._file_services
            )
            managed += sorted(from_labels, key=lambda m: m.policy.service)
        self._last = managed
        return managed, problems

    @property
    def last(self) -> list[ManagedPolicy]:
        """The policies of the last tick; the files' before the first."""
        return self._from_files if self._last is None else self._last
