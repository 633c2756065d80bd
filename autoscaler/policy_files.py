"""Policy files on disk: find them, read them, check them against each other, and follow
their edits while the agent runs (keeping the last good version of a file that breaks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoscaler.core.labels import Template
from autoscaler.core.spec import Policy, PolicyProblem, parse_policy, parse_template

POLICY_SUFFIXES = (".yaml", ".yml")
TEMPLATES_FOLDER = "templates"


@dataclass(frozen=True)
class PolicySet:
    """The policies and label templates found under some paths, and every problem with them."""

    policies: dict[str, Policy] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    problems: list[PolicyProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def _policy_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix in POLICY_SUFFIXES and not p.name.startswith(".")
    )


def _template_files(folder: Path) -> list[Path]:
    templates = folder / TEMPLATES_FOLDER
    return _policy_files(templates) if templates.is_dir() else []


def _read(file: Path) -> bytes | PolicyProblem:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        return PolicyProblem(str(file), "", "no such file or folder")
    except OSError as error:
        return PolicyProblem(str(file), "", f"is not a readable file ({error.strerror})")


def load_policies(paths: Sequence[str | Path]) -> PolicySet:
    """Read every policy named by `paths`: files, or folders (their `*.yaml` and `*.yml`,
    and the label templates in their `templates/` folder)."""
    problems: list[PolicyProblem] = []
    files: list[Path] = []
    template_files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found, found_templates = _policy_files(path), _template_files(path)
            if not found and not found_templates:
                problems.append(PolicyProblem(
                    str(path), "", "folder holds no policy file (*.yaml or *.yml)"
                ))
            files.extend(found)
            template_files.extend(found_templates)
        else:
            files.append(path)
    policies: dict[str, Policy] = {}
    for file in files:
        data = _read(file)
        parsed = [data] if isinstance(data, PolicyProblem) else parse_policy(data, str(file))
        if isinstance(parsed, Policy):
            policies[str(file)] = parsed
        else:
            problems.extend(parsed)
    templates: dict[str, Template] = {}
    for file in template_files:
        data = _read(file)
        document = [data] if isinstance(data, PolicyProblem) else parse_template(data, str(file))
        if isinstance(document, dict):
            templates[file.stem] = Template(file.stem, str(file), document)
        else:
            problems.extend(document)
    problems.extend(_same_service_twice(policies.items()))
    return PolicySet(policies, templates, problems)


def _same_service_twice(policies: Iterable[tuple[str, Policy]]) -> list[PolicyProblem]:
    first_file: dict[str, str] = {}
    problems = []
    for file, policy in policies:
        if policy.service in first_file:
            problems.append(_duplicate(file, policy.service, first_file[policy.service]))
        else:
            first_file[policy.service] = file
    return problems


def _duplicate(file: str, service: str, owner: str) -> PolicyProblem:
    return PolicyProblem(file, "service", f"service {service!r} already has a policy in {owner}")


@dataclass(frozen=True)
class ReloadEvent:
    """What one refresh did to one file: `policy_reloaded` or `policy_rejected`."""

    event: Literal["policy_reloaded", "policy_rejected"]
    file: str
    change: Literal["added", "changed", "removed"]
    service: str | None = None
    changed_keys: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    kept: Literal["last good version", "nothing"] | None = None


class PolicyWatcher:
    """The policies of one folder as they are on disk, re-read on every `refresh`.

    A file whose bytes changed is validated again: a valid version takes effect, an invalid
    one is rejected and the last good version of that file stays in force. A refresh reports
    each file once per change, not once per call.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.policies: dict[str, Policy] = {}
        self.templates: dict[str, Template] = {}
        self._seen: dict[str, bytes | str] = {}
        self._folder_problem: str | None = None

    def refresh(self) -> list[ReloadEvent]:
        try:
            files = _policy_files(self.folder)
            template_files = _template_files(self.folder)
        except OSError as error:
            problem = f"cannot read the policies folder ({error.strerror}); nothing changed"
            if problem == self._folder_problem:
                return []
            self._folder_problem = problem
            return [ReloadEvent("policy_rejected", str(self.folder), "changed",
                                problems=(problem,), kept="last good version")]
        self._folder_problem = None
        events = [
            *(self._refresh_policy(file) for file in files),
            *(self._refresh_template(file) for file in template_files),
        ]
        present = {str(f) for f in (*files, *template_files)}
        for gone in sorted(set(self._seen) - present):
            del self._seen[gone]
            removed = self.policies.pop(gone, None)
            self.templates = {n: t for n, t in self.templates.items() if t.file != gone}
            events.append(ReloadEvent("policy_reloaded", gone, "removed",
                                      service=removed.service if removed else None))
        return [e for e in events if e is not None]

    def _read_if_changed(self, file: Path) -> bytes | PolicyProblem | None:
        """The file's bytes (or why they cannot be read), or None when nothing changed."""
        data = _read(file)
        fingerprint = data if isinstance(data, bytes) else str(data)
        if self._seen.get(str(file)) == fingerprint:
            return None
        self._seen[str(file)] = fingerprint
        return data

    def _changed(self, file: Path
                 ) -> tuple[str, Literal["added", "changed"], bytes | PolicyProblem] | None:
        """(name, kind of change, bytes or why they cannot be read), or None: unchanged."""
        name = str(file)
        is_new = name not in self._seen
        data = self._read_if_changed(file)
        if data is None:
            return None
        return name, "added" if is_new else "changed", data

    def _refresh_policy(self, file: Path) -> ReloadEvent | None:
        changed = self._changed(file)
        if changed is None:
            return None
        name, change, data = changed
        parsed = [data] if isinstance(data, PolicyProblem) else parse_policy(data, name)
        if isinstance(parsed, Policy):
            owner = next((f for f, p in self.policies.items()
                          if p.service == parsed.service and f != name), None)
            if owner is None:
                previous = self.policies.get(name)
                self.policies[name] = parsed
                return ReloadEvent("policy_reloaded", name, change, service=parsed.service,
                                   changed_keys=_changed_keys(previous, parsed))
            parsed = [_duplicate(name, parsed.service, owner)]
        return self._rejected(name, change, parsed, kept=name in self.policies)

    def _refresh_template(self, file: Path) -> ReloadEvent | None:
        changed = self._changed(file)
        if changed is None:
            return None
        name, change, data = changed
        document = [data] if isinstance(data, PolicyProblem) else parse_template(data, name)
        if isinstance(document, list):
            return self._rejected(name, change, document, kept=file.stem in self.templates)
        self.templates[file.stem] = Template(file.stem, name, document)
        return ReloadEvent("policy_reloaded", name, change)

    @staticmethod
    def _rejected(name: str, change: Literal["added", "changed"],
                  problems: list[PolicyProblem], *, kept: bool) -> ReloadEvent:
        return ReloadEvent("policy_rejected", name, change,
                           problems=tuple(str(p) for p in problems),
                           kept="last good version" if kept else "nothing")


def _changed_keys(before: Policy | None, after: Policy) -> tuple[str, ...]:
    if before is None:
        return ()
    old, new = before.model_dump(), after.model_dump()
    return tuple(key for key in new if old.get(key) != new[key])
