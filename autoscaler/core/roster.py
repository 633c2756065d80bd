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
        self._given: tuple[Mapping[str, Policy], Mapping[str, Template]] | None = None
        """The mappings of the last `set`, to know them when given again."""
        self.set(policies, templates)

    def set(self, policies: Mapping[str, Policy], templates: Mapping[str, Template]) -> None:
        """Use these policy files (file -> policy) and label templates from the next tick on.

        Called every tick: given again the very mappings of the last call (the policy
        watcher's, when no file changed), it does nothing, so a caller that changes its
        mappings passes new ones rather than changing them in place (the watcher does). Else a
        file whose policy is the same object as before keeps its ManagedPolicy.
        """
        if self._given is not None and self._given[0] is policies \
                and self._given[1] is templates:
            return
        self._given = (policies, templates)
        self._templates = dict(templates)
        previous = {m.file: m for m in self._from_files}
        from_files: list[ManagedPolicy] = []
        for file, policy in sorted(policies.items(), key=_file):
            known = previous.get(file)
            from_files.append(known if known is not None and known.policy is policy
                              else ManagedPolicy(policy, file, "file"))
        self._from_files = from_files
        self._file_services = {m.policy.service for m in from_files}

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


def _file(item: tuple[str, Policy]) -> str:
    return item[0]
