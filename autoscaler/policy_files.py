"""Policy files on disk: find them, read them, check them against each other, and follow
their edits while the agent runs (keeping the last good version of a file that breaks)."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple

from autoscaler.core.labels import Template
from autoscaler.core.spec import (
    Document,
    Policy,
    PolicyProblem,
    parse_document,
    parse_policy,
    parse_template,
    validate_document,
)

POLICY_SUFFIXES = (".yaml", ".yml")
TEMPLATES_FOLDER = "templates"

MAX_POLICY_BYTES = 1024 * 1024
"""A policy is a few hundred bytes: a bigger file is a mistake, and is not read into memory."""

RACY_WINDOW_NS = 2_000_000_000
"""A file modified this recently is read again at the next refresh even if its stat looks
the same: a second write within one tick of the file system's clock (or 2 s on FAT) can
leave size, mtime and ctime as they were."""

Entry = Policy | Template
"""What one file puts in force: a policy (held per service) or a label template (per name)."""
Key = tuple[Literal["service", "template"], str]


@dataclass(frozen=True)
class PolicySet:
    """The policies and label templates found under some paths, and every problem with them."""

    policies: dict[str, Policy] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    problems: list[PolicyProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def _is_policy_name(name: str) -> bool:
    """Whether a folder's file of this name is one the agent reads: `*.yaml`, `*.yml`, not
    hidden."""
    return name.endswith(POLICY_SUFFIXES) and not name.startswith(".")


def _policy_names(folder: str | Path) -> list[str]:
    """The names of a folder's policy files, sorted: as text, since a fleet's folder holds
    ten thousand and sorting Paths costs ten times as much."""
    return sorted(name for name in os.listdir(folder) if _is_policy_name(name))


def passed_over(paths: Sequence[str | Path]) -> list[Path]:
    """The files `validate` is shown that the agent would never read from its folder: one
    named alone that is not `*.yaml` or `*.yml` or is hidden (`validate web.json` checks
    it all the same), and in a folder one named like a policy in another case
    (`web.YAML`), which `validate` of the folder passes over in silence as the agent does."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            if path.exists() and not _is_policy_name(path.name):
                found.append(path)
            continue
        for folder in (path, path / TEMPLATES_FOLDER):
            if folder.is_dir():
                found += [folder / name for name in sorted(os.listdir(folder))
                          if name.lower().endswith(POLICY_SUFFIXES)
                          and not _is_policy_name(name) and not name.startswith(".")]
    return found


def _joined(folder: Path) -> str:
    """What a name is appended to, to give `str(folder / name)` (for the folder `.`, nothing)."""
    return str(folder / "_")[:-1]


def _folder_files(folder: Path) -> list[tuple[str, bool]]:
    """The policy files of a folder, then the templates of its `templates/` folder, as the
    text `str(folder / name)` gives, each with whether it is a template."""
    joined, templates = _joined(folder), folder / TEMPLATES_FOLDER
    files = [(joined + name, False) for name in _policy_names(folder)]
    if templates.is_dir():
        joined = _joined(templates)
        files += [(joined + name, True) for name in _policy_names(templates)]
    return files


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _unreadable(file: str, why: str | OSError) -> PolicyProblem:
    if isinstance(why, OSError):
        why = why.strerror or str(why)
    return PolicyProblem(file, "", f"is not a readable file: {why}")


def _not_regular(file: str, mode: int, *, via_symlink: bool) -> PolicyProblem:
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return _unreadable(file, f"{'a symlink to ' if via_symlink else ''}{kind}, not a regular "
                             "file (only regular files are read)")


def _too_big(file: str, size: int | None) -> PolicyProblem:
    found = f"{size:,} bytes, " if size is not None else ""
    return PolicyProblem(file, "", f"is {found}over the {MAX_POLICY_BYTES / 2**20:g} MiB cap "
                                   f"on a policy file ({MAX_POLICY_BYTES:,} bytes)")


def read_policy_bytes(path: str | Path) -> bytes | PolicyProblem:
    """The bytes of a policy (or template) file, or why they are not read.

    Every reader of policy files goes through here. Only a regular file, or a symlink to
    one, of at most MAX_POLICY_BYTES is read: a FIFO would block the reader, a device or a
    huge file exhaust its memory. The checks are made on the stat before opening; the open
    is non-blocking and checked again, in case the file was swapped in between.
    """
    file = str(path)
    try:
        own = os.lstat(path)
    except FileNotFoundError:
        return _unreadable(file, "no such file or folder")
    except OSError as error:
        return _unreadable(file, error)
    via_symlink = stat.S_ISLNK(own.st_mode)
    try:
        found = os.stat(path) if via_symlink else own
    except OSError as error:
        return _unreadable(file, f"a symlink to nothing readable ({error.strerror})")
    if not stat.S_ISREG(found.st_mode):
        return _not_regular(file, found.st_mode, via_symlink=via_symlink)
    if found.st_size > MAX_POLICY_BYTES:
        return _too_big(file, found.st_size)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        return _unreadable(file, error)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            return _not_regular(file, mode, via_symlink=via_symlink)
        chunks: list[bytes] = []
        left = MAX_POLICY_BYTES + 1
        while left > 0 and (chunk := os.read(descriptor, left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as error:
        return _unreadable(file, error)
    finally:
        os.close(descriptor)
    return _too_big(file, None) if left <= 0 else b"".join(chunks)


def read_policy_file(path: str | Path) -> Policy | list[PolicyProblem]:
    """One policy file read (see `read_policy_bytes`) and checked on its own."""
    data = read_policy_bytes(path)
    return [data] if isinstance(data, PolicyProblem) else parse_policy(data, str(path))


def _parse(data: bytes | PolicyProblem, path: str | Path, *, template: bool
           ) -> Entry | list[PolicyProblem]:
    """What a policy (or template, named by its file's stem) file's bytes give."""
    if isinstance(data, PolicyProblem):
        return [data]
    if not template:
        return parse_policy(data, str(path))
    document = parse_template(data, str(path))
    return (document if isinstance(document, list)
            else Template(Path(path).stem, str(path), document))


def _key(entry: Entry) -> Key:
    return ("service", entry.service) if isinstance(entry, Policy) else ("template", entry.name)


def _holders(candidates: Iterable[tuple[str, Entry]],
             incumbents: Mapping[Key, str]) -> dict[Key, str]:
    """The file that holds each service (and template name) among files that name the same:
    the one that held it before, while it still names it; else the first. A file added
    beside the one in force (an editor's copy, a draft) never displaces it."""
    holders: dict[Key, str] = {}
    for file, entry in candidates:
        key = _key(entry)
        if key not in holders or incumbents.get(key) == file:
            holders[key] = file
    return holders


def _duplicate(file: str, entry: Entry, owner: str) -> PolicyProblem:
    if isinstance(entry, Policy):
        return PolicyProblem(file, "service",
                             f"service {entry.service!r} already has a policy in {owner}")
    return PolicyProblem(file, "", f"template {entry.name!r} is already defined in {owner}")


def load_policies(paths: Sequence[str | Path]) -> PolicySet:
    """Read every policy named by `paths`: files, or folders (their `*.yaml` and `*.yml`,
    and the label templates in their `templates/` folder). A file named alone in a
    `templates/` folder is a template too, as its folder would read it. Of several files
    naming one service (or template), the first is taken and the others reported."""
    problems: list[PolicyProblem] = []
    files: list[tuple[Path, bool]] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = _folder_files(path)
            if not found:
                problems.append(PolicyProblem(
                    str(path), "", "folder holds no policy file (*.yaml or *.yml)"
                ))
            files.extend((Path(name), template) for name, template in found)
        else:
            files.append((path, path.parent.name == TEMPLATES_FOLDER))
    candidates: list[tuple[str, Entry]] = []
    for file, template in files:
        read = _parse(read_policy_bytes(file), file, template=template)
        if isinstance(read, list):
            problems.extend(read)
        else:
            candidates.append((str(file), read))
    holders = _holders(candidates, {})
    policies: dict[str, Policy] = {}
    templates: dict[str, Template] = {}
    for name, entry in candidates:
        owner = holders[_key(entry)]
        if owner != name:
            problems.append(_duplicate(name, entry, owner))
        elif isinstance(entry, Policy):
            policies[name] = entry
        else:
            templates[entry.name] = entry
    return PolicySet(policies, templates, problems)


BACKTEST_QUERY = "backtest_trace"
"""The query a backtest fills in for a metric without one: the trace feeds every metric,
so a policy written for backtests only needs none (`validate` and the agent do)."""


def _with_queries(document: Document) -> tuple[Document, list[str]]:
    """The policy document with `BACKTEST_QUERY` for each metric that has no `query`, and
    those metrics' names. Anything not shaped like a metric is left for validation."""
    metrics = document.get("metrics")
    if not isinstance(metrics, list):
        return document, []
    filled, named = [], []
    for index, metric in enumerate(metrics):
        if isinstance(metric, dict) and "query" not in metric:
            name = metric.get("name")
            named.append(str(name) if isinstance(name, str) else f"metrics[{index}]")
            metric = {**metric, "query": BACKTEST_QUERY}
        filled.append(metric)
    return {**document, "metrics": filled}, named


def read_alternative(file: Path) -> tuple[Policy | list[PolicyProblem], list[str]]:
    """A policy file as `read_policy_file` reads it, but a metric may leave out its query
    (an alternative for `backtest` and `tune`, which the trace feeds); and the names of the
    metrics that do."""
    data = read_policy_bytes(file)
    if isinstance(data, PolicyProblem):
        return [data], []
    document = parse_document(data, str(file))
    if isinstance(document, list):
        return document, []
    document, unqueried = _with_queries(document)
    return validate_document(document, str(file)), unqueried


def load_alternatives(paths: Sequence[str | Path]) -> tuple[PolicySet, list[str]]:
    """Read the policy files named by `paths` (files, or folders' `*.yaml` and `*.yml`) as
    alternatives to compare in `backtest` and `tune`: each on its own, so that several may
    name one service, and a metric may leave out its query. Also a note for each metric
    without one."""
    policy_set, notes = PolicySet(), []
    for path in map(Path, paths):
        files = [path / name for name in _policy_names(path)] if path.is_dir() else [path]
        if not files:
            policy_set.problems.append(PolicyProblem(
                str(path), "", "folder holds no policy file (*.yaml or *.yml)"))
        for file in files:
            read, unqueried = read_alternative(file)
            if isinstance(read, list):
                policy_set.problems.extend(read)
                continue
            policy_set.policies[str(file)] = read
            notes += [f"{file}: metric {name} has no query: fine in backtest and tune, which "
                      "the trace feeds; the agent needs one" for name in unqueried]
    return policy_set, notes


Change = Literal["added", "changed", "removed", "duplicate resolved", "readable again"]


@dataclass(frozen=True)
class ReloadEvent:
    """What one refresh did to one file.

    `policy_reloaded`: what the file puts in force changed. `change` says why: the file was
    `added`, `changed` or `removed`, or (`duplicate resolved`) the file that held its service
    or template name before, `replaces`, went away or now names another one; or, for the
    folder itself, it is `readable again` after a `policy_rejected` that said it was not.
    `policy_rejected`: the file is invalid, or names what another file holds; `kept` says
    whether its last good version stays in force.
    """

    event: Literal["policy_reloaded", "policy_rejected"]
    file: str
    change: Change
    service: str | None = None
    changed_keys: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    kept: Literal["last good version", "nothing"] | None = None
    replaces: str | None = None


class _Stat(NamedTuple):
    """What tells a file's edits apart without reading it (a rename over it: the inode)."""

    device: int
    inode: int
    mode: int
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True)
class _Seen:
    """One file as last read: its stat, a digest of its bytes (or why they were not read),
    and what they gave."""

    stat: _Stat | None
    racy: bool
    content: bytes | str
    read: Entry | list[PolicyProblem]


def _stat(path: str) -> _Stat | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return _Stat(found.st_dev, found.st_ino, found.st_mode, found.st_size, found.st_mtime_ns,
                 found.st_ctime_ns)


class PolicyWatcher:
    """The policies of one folder (or of one file) as they are on disk, followed by
    `refresh`.

    After any sequence of edits, the policies (and templates) in force are those a fresh
    start would take from the folder as it is, plus the last good version of each file that
    is now invalid; where two files name one service, the file that held it keeps it while
    it names it. A refresh reads only the files whose stat changed (or changed recently, see
    RACY_WINDOW_NS), and reports each file once per change, not once per call.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.policies: dict[str, Policy] = {}
        self.templates: dict[str, Template] = {}
        self._seen: dict[str, _Seen] = {}
        self._in_force: dict[str, Entry] = {}
        self._folder_problem: str | None = None

    def refresh(self) -> list[ReloadEvent]:
        """Take up the folder's edits since the last refresh; each file's change said once.
        A folder that cannot be listed changes nothing.

        When no file was added, removed or changed in content, what is in force stays as it
        is, `policies` and `templates` the very same dicts: a refresh of a fleet's folder with
        nothing changed costs a listing and a stat per file, not a pass over the policies.
        """
        started = time.time_ns()
        try:
            files = ([(str(self.folder), False)] if self.folder.is_file()
                     else _folder_files(self.folder))
        except OSError as error:
            problem = f"cannot read the policies folder ({error.strerror}); nothing changed"
            if problem == self._folder_problem:
                return []
            self._folder_problem = problem
            return [ReloadEvent("policy_rejected", str(self.folder), "changed",
                                problems=(problem,),
                                kept="last good version" if self._in_force else "nothing")]
        recovered = [] if self._folder_problem is None else [
            ReloadEvent("policy_reloaded", str(self.folder), "readable again")]
        self._folder_problem = None
        seen = self._seen
        present = [name for name, _ in files]
        gone = sorted(seen.keys() - set(present))
        for name in gone:
            del seen[name]
        added = {name for name in present if name not in seen}
        changed = {name for name, template in files
                   if self._look(name, started, template=template)}
        if not gone and not changed:
            # Every file gives what it gave: taking them up again would give what is in force
            # (a new file is always `changed`, so none was added either)
            return recovered
        before = self._in_force
        if not gone and not added:
            edited = self._edited_in_place([n for n in present if n in changed], before)
            if edited is not None:
                return recovered + edited
        candidates = [(name, entry) for name in present
                      if (entry := self._candidate(name, before)) is not None]
        incumbents = {_key(entry): name for name, entry in before.items()}
        holders = _holders(candidates, incumbents)
        self._in_force = {name: e for name, e in candidates if holders[_key(e)] == name}
        self.policies = {n: e for n, e in self._in_force.items() if isinstance(e, Policy)}
        self.templates = {e.name: e for e in self._in_force.values()
                          if isinstance(e, Template)}
        events = recovered + [ReloadEvent("policy_reloaded", name, "removed",
                                          service=_service(before.get(name))) for name in gone]
        for name in present:
            change: Change = "added" if name in added else "changed"
            if name in changed:
                events.append(self._event(name, change, before.get(name), holders, incumbents))
            elif name in self._in_force and name not in before:
                entry = self._in_force[name]
                events.append(ReloadEvent("policy_reloaded", name, "duplicate resolved",
                                          service=_service(entry),
                                          replaces=incumbents.get(_key(entry))))
        return events

    def _edited_in_place(self, changed: list[str], before: Mapping[str, Entry]
                         ) -> list[ReloadEvent] | None:
        """The events of edits (in the folder's order) that leave each file in force naming
        what it named (the common edit: a target, a bound), taken up without working out
        again which file holds each service; None when an edit may move a service or a
        template from one file to another, which needs that pass over every file."""
        taken: dict[str, Entry] = {}
        for name in changed:
            previous = before.get(name)
            entry = self._candidate(name, before)
            if previous is None or entry is None or _key(entry) != _key(previous):
                return None
            taken[name] = entry
        self._in_force = {**before, **taken}
        self.policies = {n: e for n, e in self._in_force.items() if isinstance(e, Policy)}
        self.templates = {e.name: e for e in self._in_force.values()
                          if isinstance(e, Template)}
        held = {_key(entry): name for name, entry in taken.items()}
        return [self._event(name, "changed", before[name], held, held) for name in changed]

    def _look(self, name: str, started: int, *, template: bool) -> bool:
        """Read the file again unless its stat is the one last read (and not recent); True
        when what it holds changed."""
        seen = self._seen.get(name)
        found = _stat(name)
        if seen is not None and found is not None and found == seen.stat and not seen.racy:
            return False
        data = read_policy_bytes(name)
        content = hashlib.sha256(data).digest() if isinstance(data, bytes) else str(data)
        racy = found is not None and started - max(found.mtime_ns, found.ctime_ns) < RACY_WINDOW_NS
        if seen is not None and seen.content == content:
            self._seen[name] = replace(seen, stat=found, racy=racy)
            return False
        self._seen[name] = _Seen(found, racy, content, _parse(data, name, template=template))
        return True

    def _candidate(self, name: str, before: Mapping[str, Entry]) -> Entry | None:
        """What the file would put in force: its content if valid, else its last good one."""
        read = self._seen[name].read
        return before.get(name) if isinstance(read, list) else read

    def _event(self, name: str, change: Change, previous: Entry | None,
               holders: Mapping[Key, str], incumbents: Mapping[Key, str]) -> ReloadEvent:
        """The event of a file whose content changed."""
        read = self._seen[name].read
        now = self._in_force.get(name)
        if isinstance(read, list):
            return ReloadEvent("policy_rejected", name, change, service=_service(now),
                               problems=tuple(str(p) for p in read),
                               kept="last good version" if now is not None else "nothing")
        owner = holders[_key(read)]
        if owner != name:
            return ReloadEvent("policy_rejected", name, change, service=_service(read),
                               problems=(str(_duplicate(name, read, owner)),), kept="nothing")
        replaced = incumbents.get(_key(read))
        return ReloadEvent("policy_reloaded", name, change, service=_service(read),
                           changed_keys=_changed_keys(previous, read),
                           replaces=replaced if replaced != name else None)


def _service(entry: Entry | None) -> str | None:
    return entry.service if isinstance(entry, Policy) else None


def _changed_keys(before: Entry | None, after: Entry) -> tuple[str, ...]:
    if not isinstance(before, Policy) or not isinstance(after, Policy):
        return ()
    old, new = before.model_dump(), after.model_dump()
    return tuple(key for key in new if old.get(key) != new[key])
