"""Following edits of the policies folder: take valid ones, keep the last good version, and
after any sequence of edits hold what a fresh start would (the incumbent of a contested
service aside), each change said once."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from autoscaler import policy_files
from autoscaler.core.spec import Policy
from autoscaler.policy_files import (
    MAX_POLICY_BYTES,
    PolicyWatcher,
    ReloadEvent,
    load_policies,
    read_policy_file,
)
from tests.unit.test_policy_files import within

WEB = "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n"
API = "service: api\nmax_replicas: 3\nmetrics: [{name: rps, query: q, target: 10}]\n"
TEMPLATE = "max_replicas: 4\nmetrics: [{name: rps, query: q, target: 10}]\n"
BROKEN = "service: web\nmax_replica: 5\nmetrics: [{name: rps, query: q, target: 10}]\n"


def policy(service: str, replicas: int = 5) -> str:
    return WEB.replace("web", service).replace("5", str(replicas))


def summary(events: list[ReloadEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, Path(e.file).name, e.change) for e in events]


def said(event: ReloadEvent) -> str:
    """An event in short: `reloaded b.yaml duplicate resolved web replaces a.yaml`."""
    words = [event.event.removeprefix("policy_"), Path(event.file).name, event.change]
    words += [event.service] if event.service else []
    words += [f"kept {event.kept}"] if event.kept else []
    words += [f"replaces {Path(event.replaces).name}"] if event.replaces else []
    return " ".join(words)


def in_force(watcher: PolicyWatcher) -> dict[str, str]:
    return {Path(file).name: p.service for file, p in watcher.policies.items()}


def test_the_first_refresh_adds_every_file(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.yaml").write_text(TEMPLATE)
    watcher = PolicyWatcher(tmp_path)

    events = watcher.refresh()

    assert summary(events) == [("policy_reloaded", "web.yaml", "added"),
                               ("policy_reloaded", "default.yaml", "added")]
    assert [p.service for p in watcher.policies.values()] == ["web"]
    assert list(watcher.templates) == ["default"]
    assert watcher.refresh() == []


def test_an_edit_is_taken_and_says_what_changed(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "web.yaml").write_text(WEB.replace("max_replicas: 5", "max_replicas: 9"))
    (event,) = watcher.refresh()

    assert (event.event, event.change, event.service) == ("policy_reloaded", "changed", "web")
    assert event.changed_keys == ("max_replicas",)
    assert next(iter(watcher.policies.values())).max_replicas == 9


def test_a_broken_edit_is_rejected_once_and_the_last_good_version_stays(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "web.yaml").write_text(BROKEN)
    (event,) = watcher.refresh()

    assert (event.event, event.kept) == ("policy_rejected", "last good version")
    expected = [str(p) for p in load_policies([tmp_path / "web.yaml"]).problems]
    assert list(event.problems) == expected
    assert any("did you mean 'max_replicas'" in p for p in event.problems)
    assert next(iter(watcher.policies.values())).max_replicas == 5
    assert watcher.refresh() == []

    (tmp_path / "web.yaml").write_text(WEB.replace("max_replicas: 5", "max_replicas: 6"))
    assert summary(watcher.refresh()) == [("policy_reloaded", "web.yaml", "changed")]


def test_a_new_file_for_a_managed_service_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "web-copy.yaml").write_text(WEB)
    (event,) = watcher.refresh()

    assert (event.event, event.kept) == ("policy_rejected", "nothing")
    assert event.problems == (f"{tmp_path / 'web-copy.yaml'}: service: service 'web' already "
                              f"has a policy in {tmp_path / 'web.yaml'}",)
    assert list(watcher.policies) == [str(tmp_path / "web.yaml")]


def test_added_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "api.yml").write_text(API)
    (tmp_path / "web.yaml").unlink()

    assert summary(watcher.refresh()) == [("policy_reloaded", "web.yaml", "removed"),
                                          ("policy_reloaded", "api.yml", "added")]
    assert [p.service for p in watcher.policies.values()] == ["api"]


def test_an_invalid_template_is_rejected_and_a_good_one_kept(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    template = tmp_path / "templates" / "default.yaml"
    template.write_text(TEMPLATE)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    template.write_text("service: web\n" + TEMPLATE)
    (event,) = watcher.refresh()

    assert event.event == "policy_rejected"
    assert "a template names no service" in event.problems[0]
    assert watcher.templates["default"].document["max_replicas"] == 4


def test_a_second_template_of_one_name_takes_over_when_the_first_goes(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.yaml").write_text(TEMPLATE)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "templates" / "default.yml").write_text(TEMPLATE.replace("4", "7"))
    assert [said(e) for e in watcher.refresh()] == ["rejected default.yml added kept nothing"]
    (tmp_path / "templates" / "default.yaml").unlink()

    assert [said(e) for e in watcher.refresh()] == [
        "reloaded default.yaml removed",
        "reloaded default.yml duplicate resolved replaces default.yaml",
    ]
    assert watcher.templates["default"].document["max_replicas"] == 7


def test_a_folder_that_disappears_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(folder)
    watcher.refresh()

    (folder / "web.yaml").unlink()
    folder.rmdir()
    (event,) = watcher.refresh()

    assert event.event == "policy_rejected"
    assert len(watcher.policies) == 1
    assert watcher.refresh() == []


@pytest.mark.parametrize(("edit", "then"), [
    pytest.param(None, [], id="as-it-was"),
    pytest.param(API, ["reloaded web.yaml changed api"], id="with-an-edit"),
])
def test_a_folder_that_comes_back_is_said_readable_again_once(
        tmp_path: Path, edit: str | None, then: list[str]) -> None:
    """The warning that the folder cannot be read has its all-clear, as every other problem
    of the agent that ends does."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(folder)
    watcher.refresh()
    folder.rename(tmp_path / "away")
    (event,) = watcher.refresh()
    assert event.event == "policy_rejected"

    (tmp_path / "away").rename(folder)
    if edit is not None:
        (folder / "web.yaml").write_text(edit)

    assert [said(e) for e in watcher.refresh()] == ["reloaded policies readable again", *then]
    assert watcher.refresh() == []


Edit = Callable[[Path], None]


def put(name: str, text: str) -> Edit:
    return lambda folder: (folder / name).write_text(text)


def saved_by_rename(name: str, text: str) -> Edit:
    """An editor's save: a hidden temporary file renamed over the file."""
    def edit(folder: Path) -> None:
        (folder / f".{name}.tmp").write_text(text)
        os.replace(folder / f".{name}.tmp", folder / name)
    return edit


def saved_with_a_backup(name: str, text: str) -> Edit:
    """Another editor's save: the file renamed to a backup, written anew, the backup gone."""
    def edit(folder: Path) -> None:
        os.replace(folder / name, folder / f"{name}~")
        (folder / name).write_text(text)
        (folder / f"{name}~").unlink()
    return edit


def move(source: str, target: str) -> Edit:
    return lambda folder: os.replace(folder / source, folder / target)


def drop(name: str) -> Edit:
    return lambda folder: (folder / name).unlink()


def fifo(name: str) -> Edit:
    def edit(folder: Path) -> None:
        (folder / name).unlink(missing_ok=True)
        os.mkfifo(folder / name)
    return edit


def symlink(name: str, target: str) -> Edit:
    def edit(folder: Path) -> None:
        (folder / name).unlink(missing_ok=True)
        os.symlink(target, folder / name)
    return edit


def grown_past_the_cap(name: str) -> Edit:
    def edit(folder: Path) -> None:
        with (folder / name).open("a") as file:
            file.write("#" * MAX_POLICY_BYTES)
    return edit


def both(*edits: Edit) -> Edit:
    def edit(folder: Path) -> None:
        for each in edits:
            each(folder)
    return edit


Step = tuple[Edit, list[str], dict[str, str]]
"""An edit, the events the next refresh says, and the policies in force after it."""

WEB_IN_A: Step = (put("a.yaml", WEB), ["reloaded a.yaml added web"], {"a.yaml": "web"})
WEB_IN_A_AND_B: list[Step] = [
    WEB_IN_A, (put("b.yaml", WEB), ["rejected b.yaml added web kept nothing"], {"a.yaml": "web"})
]
A_GONE_B_TAKES_OVER: Step = (
    drop("a.yaml"),
    ["reloaded a.yaml removed web", "reloaded b.yaml duplicate resolved web replaces a.yaml"],
    {"b.yaml": "web"},
)
WEB_KEPT = "rejected web.yaml changed web kept last good version"

SCENARIOS = [
    pytest.param([
        WEB_IN_A,
        (move("a.yaml", "web.yaml"),
         ["reloaded a.yaml removed web", "reloaded web.yaml added web replaces a.yaml"],
         {"web.yaml": "web"}),
    ], id="renamed"),
    pytest.param([
        WEB_IN_A,
        (put("b.yaml", API), ["reloaded b.yaml added api"], {"a.yaml": "web", "b.yaml": "api"}),
        (move("a.yaml", "b.yaml"),
         ["reloaded a.yaml removed web", "reloaded b.yaml changed web replaces a.yaml"],
         {"b.yaml": "web"}),
    ], id="renamed-over-another-file"),
    pytest.param([*WEB_IN_A_AND_B, A_GONE_B_TAKES_OVER], id="a-duplicate-whose-first-goes"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (put("0-draft.yaml", policy("web", 9)),
         ["rejected 0-draft.yaml added web kept nothing"], {"web.yaml": "web"}),
    ], id="a-draft-sorting-first-displaces-nothing"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (saved_by_rename("web.yaml", policy("web", 9)), ["reloaded web.yaml changed web"],
         {"web.yaml": "web"}),
        (saved_with_a_backup("web.yaml", policy("web", 8)), ["reloaded web.yaml changed web"],
         {"web.yaml": "web"}),
        (saved_by_rename("web.yaml", BROKEN), [WEB_KEPT], {"web.yaml": "web"}),
    ], id="saved-by-editors"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (drop("web.yaml"), ["reloaded web.yaml removed web"], {}),
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
    ], id="a-file-that-comes-back"),
    pytest.param([
        (put("web.yaml", BROKEN), ["rejected web.yaml added kept nothing"], {}),
        (put("web.yaml", WEB), ["reloaded web.yaml changed web"], {"web.yaml": "web"}),
        (put("web.yaml", BROKEN), [WEB_KEPT], {"web.yaml": "web"}),
        (put("web.yaml", policy("web", 7)), ["reloaded web.yaml changed web"],
         {"web.yaml": "web"}),
    ], id="invalid-then-valid"),
    pytest.param([
        *WEB_IN_A_AND_B,
        (put("a.yaml", BROKEN), ["rejected a.yaml changed web kept last good version"],
         {"a.yaml": "web"}),
        A_GONE_B_TAKES_OVER,
    ], id="the-holder-breaks-while-a-duplicate-waits"),
    pytest.param([
        *WEB_IN_A_AND_B,
        (put("a.yaml", API),
         ["reloaded a.yaml changed api", "reloaded b.yaml duplicate resolved web replaces a.yaml"],
         {"a.yaml": "api", "b.yaml": "web"}),
    ], id="the-holder-names-another-service"),
    pytest.param([
        *WEB_IN_A_AND_B,
        (put("b.yaml", BROKEN), ["rejected b.yaml changed kept nothing"], {"a.yaml": "web"}),
        (drop("a.yaml"), ["reloaded a.yaml removed web"], {}),
    ], id="a-duplicate-never-in-force-keeps-nothing"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (fifo("web.yaml"), [WEB_KEPT], {"web.yaml": "web"}),
        (both(drop("web.yaml"), put("web.yaml", policy("web", 6))),
         ["reloaded web.yaml changed web"], {"web.yaml": "web"}),
    ], id="replaced-by-a-fifo"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (symlink("web.yaml", "/dev/zero"), [WEB_KEPT], {"web.yaml": "web"}),
        (both(put("real.policy", policy("web", 6)), symlink("web.yaml", "real.policy")),
         ["reloaded web.yaml changed web"], {"web.yaml": "web"}),
        (put("real.policy", policy("web", 12)), ["reloaded web.yaml changed web"],
         {"web.yaml": "web"}),
    ], id="replaced-by-symlinks"),
    pytest.param([
        (put("web.yaml", WEB), ["reloaded web.yaml added web"], {"web.yaml": "web"}),
        (grown_past_the_cap("web.yaml"), [WEB_KEPT], {"web.yaml": "web"}),
    ], id="grown-past-the-cap"),
    pytest.param([
        (lambda folder: (folder / "x.yaml").mkdir(), ["rejected x.yaml added kept nothing"], {}),
        (both(lambda folder: (folder / "x.yaml").rmdir(), put("x.yaml", API)),
         ["reloaded x.yaml changed api"], {"x.yaml": "api"}),
    ], id="a-folder-named-like-a-policy"),
]


@pytest.mark.parametrize("steps", SCENARIOS)
def test_edits(tmp_path: Path, steps: list[Step]) -> None:
    watcher = PolicyWatcher(tmp_path)
    for edit, events, policies in steps:
        edit(tmp_path)

        assert [said(e) for e in within(watcher.refresh)] == events
        assert in_force(watcher) == policies
        assert within(watcher.refresh) == [], "a second refresh (a SIGHUP) says nothing new"


def test_what_is_not_a_regular_file_is_named_in_the_rejection(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "x.yaml").mkdir()

    events = within(PolicyWatcher(tmp_path).refresh)

    assert [e.problems for e in events] == [
        (f"{tmp_path / 'pipe.yaml'}: is not a readable file: a FIFO, not a regular file (only "
         "regular files are read)",),
        (f"{tmp_path / 'x.yaml'}: is not a readable file: a folder, not a regular file (only "
         "regular files are read)",),
    ]


def test_a_refresh_reads_only_the_files_whose_stat_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy_files, "RACY_WINDOW_NS", 0)
    for number in range(30):
        (tmp_path / f"s{number}.yaml").write_text(policy(f"s{number}"))
    reads = counted_reads(monkeypatch)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()
    assert len(reads) == 30

    reads.clear()
    assert watcher.refresh() == []
    assert reads == []

    (tmp_path / "s7.yaml").write_text(policy("s7", replicas=12))
    saved_by_rename("s9.yaml", policy("s9"))(tmp_path)
    assert [said(e) for e in watcher.refresh()] == ["reloaded s7.yaml changed s7"]
    assert sorted(reads) == ["s7.yaml", "s9.yaml"]


def test_a_rewrite_that_leaves_the_stat_as_it_was_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writes of one size within a tick of the file system's clock leave the same stat:
    a file changed that recently is read again until its stat can be trusted."""
    file = tmp_path / "web.yaml"
    file.write_text(policy("web", 5))
    frozen, real_stat = os.stat(file), os.stat
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: (
        frozen if str(path) == str(file) else real_stat(path, *args, **kwargs)))
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    file.write_text(policy("web", 6))

    assert [said(e) for e in watcher.refresh()] == ["reloaded web.yaml changed web"]
    assert watcher.policies[str(file)].max_replicas == 6


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files read from now on, in order."""
    reads: list[str] = []
    real_read = policy_files.read_policy_bytes

    def counting_read(path: str | Path) -> bytes | policy_files.PolicyProblem:
        reads.append(Path(path).name)
        return real_read(path)

    monkeypatch.setattr(policy_files, "read_policy_bytes", counting_read)
    return reads


def test_a_refresh_with_nothing_changed_keeps_what_is_in_force_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet's folder refreshed every tick: with nothing changed, no event, no file read,
    and the very same dicts (which the roster then knows as the ones it has)."""
    monkeypatch.setattr(policy_files, "RACY_WINDOW_NS", 0)
    for number in range(5):
        (tmp_path / f"s{number}.yaml").write_text(policy(f"s{number}"))
    (tmp_path / "z.yaml").write_text(BROKEN)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.yaml").write_text(TEMPLATE)
    watcher = PolicyWatcher(tmp_path)
    assert len(watcher.refresh()) == 7
    policies, templates = watcher.policies, watcher.templates
    reads = counted_reads(monkeypatch)

    assert watcher.refresh() == []
    assert watcher.policies is policies and watcher.templates is templates
    assert reads == []

    (tmp_path / "s3.yaml").write_text(policy("s3", replicas=12))
    assert [said(e) for e in watcher.refresh()] == ["reloaded s3.yaml changed s3"]
    assert reads == ["s3.yaml"]
    assert watcher.policies is not policies, "a change gives new dicts, the old left as they were"
    assert policies[str(tmp_path / "s3.yaml")].max_replicas == 5
    assert watcher.policies[str(tmp_path / "s3.yaml")].max_replicas == 12
    assert watcher.templates == templates
    assert watcher.refresh() == []


def test_a_rewrite_to_the_same_content_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy_files, "RACY_WINDOW_NS", 0)
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()
    policies = watcher.policies

    saved_by_rename("web.yaml", WEB)(tmp_path)

    assert watcher.refresh() == []
    assert watcher.policies is policies


def test_a_racy_file_is_read_again_while_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written just now is read at every refresh, even those that change nothing,
    until its stat can be trusted: a rewrite that leaves its stat as it was is still seen."""
    file = tmp_path / "web.yaml"
    file.write_text(policy("web", 5))
    (tmp_path / "api.yaml").write_text(API)
    frozen, real_stat = os.stat(file), os.stat
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: (
        frozen if str(path) == str(file) else real_stat(path, *args, **kwargs)))
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()
    policies = watcher.policies
    reads = counted_reads(monkeypatch)

    assert watcher.refresh() == []
    assert "web.yaml" in reads
    assert watcher.policies is policies

    file.write_text(policy("web", 6))

    assert [said(e) for e in watcher.refresh()] == ["reloaded web.yaml changed web"]
    assert watcher.policies[str(file)].max_replicas == 6


def test_a_relative_folder_names_files_as_paths_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("web.yaml").write_text(WEB)
    Path("templates").mkdir()
    Path("templates", "default.yaml").write_text(TEMPLATE)

    for folder in (Path("."), Path("templates/..")):
        watcher = PolicyWatcher(folder)
        events = watcher.refresh()

        assert [e.file for e in events] == [str(folder / "web.yaml"),
                                            str(folder / "templates" / "default.yaml")]
        assert list(watcher.policies) == list(load_policies([folder]).policies)
        assert watcher.templates["default"].file == str(folder / "templates" / "default.yaml")


NAMES = ["a.yaml", "b.yml", "web.yaml"]
SERVICES = ["web", "api"]
INVALID = ["service: [", BROKEN, "\xff", ""]


class PolicyFolderEdits(RuleBasedStateMachine):
    """Random edits of a folder, each followed by a refresh of one watcher."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="policy-edits-"))
        self.watcher = PolicyWatcher(self.folder)

    def teardown(self) -> None:
        shutil.rmtree(self.folder)

    def clear(self, name: str) -> Path:
        path = self.folder / name
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
        return path

    def regular(self, name: str) -> Path:
        """The path, cleared unless it is a regular file (writing a FIFO would block)."""
        path = self.folder / name
        return path if path.is_file() and not path.is_symlink() else self.clear(name)

    @rule(name=st.sampled_from(NAMES), service=st.sampled_from(SERVICES),
          replicas=st.integers(1, 30))
    def write_valid(self, name: str, service: str, replicas: int) -> None:
        self.regular(name).write_text(policy(service, replicas))

    @rule(name=st.sampled_from(NAMES), service=st.sampled_from(SERVICES),
          replicas=st.integers(1, 30))
    def save_valid_by_rename(self, name: str, service: str, replicas: int) -> None:
        saved_by_rename(self.regular(name).name, policy(service, replicas))(self.folder)

    @rule(name=st.sampled_from(NAMES), text=st.sampled_from(INVALID))
    def write_invalid(self, name: str, text: str) -> None:
        self.regular(name).write_text(text)

    @rule(source=st.sampled_from(NAMES), to=st.sampled_from(NAMES))
    def rename(self, source: str, to: str) -> None:
        if source != to and os.path.lexists(self.folder / source):
            os.replace(self.folder / source, self.clear(to))

    @rule(name=st.sampled_from(NAMES))
    def remove(self, name: str) -> None:
        self.clear(name)

    @rule(name=st.sampled_from(NAMES), to=st.sampled_from([*NAMES, "/dev/zero", "gone"]))
    def symlink(self, name: str, to: str) -> None:
        os.symlink(to, self.clear(name))

    @rule(name=st.sampled_from(NAMES))
    def fifo(self, name: str) -> None:
        os.mkfifo(self.clear(name))

    @rule(name=st.sampled_from(NAMES))
    def make_folder(self, name: str) -> None:
        self.clear(name).mkdir()

    @rule(name=st.sampled_from(NAMES))
    def huge(self, name: str) -> None:
        with self.regular(name).open("ab") as file:
            file.truncate(2 * MAX_POLICY_BYTES)

    @invariant()
    def refresh_holds_a_fresh_start_plus_the_last_good_versions(self) -> None:
        before = dict(self.watcher.policies)
        events = within(self.watcher.refresh)
        after = self.watcher.policies
        files = sorted(str(p) for p in self.folder.iterdir()
                       if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
        read = within(lambda: {file: read_policy_file(file) for file in files})
        last_good = {f: before[f] for f, r in read.items() if isinstance(r, list) and f in before}
        candidates = sorted([*((f, r) for f, r in read.items() if isinstance(r, Policy)),
                             *last_good.items()], key=lambda candidate: candidate[0])
        holder = {p.service: f for f, p in reversed(candidates)}
        named = {(f, p.service) for f, p in candidates}
        holder |= {p.service: f for f, p in before.items() if (f, p.service) in named}
        assert after == {f: p for f, p in candidates if holder[p.service] == f}
        if len(holder) == len(candidates):
            fresh = load_policies([self.folder]).policies
            assert after == {**fresh, **last_good}
            started = PolicyWatcher(self.folder)
            within(started.refresh)
            assert started.policies == fresh
        files_said = [e.file for e in events]
        assert len(files_said) == len(set(files_said)), "one event per file"
        assert {f for f in before.keys() | after.keys() if before.get(f) != after.get(f)} \
            <= set(files_said)
        for event in events:
            if event.change == "removed":
                assert event.file not in read
                assert event.file not in after
            elif event.event == "policy_reloaded":
                assert after[event.file].service == event.service
            else:
                assert (event.file in after) == (event.kept == "last good version")
        assert within(self.watcher.refresh) == []
        assert self.watcher.policies == after


PolicyFolderEdits.TestCase.settings = settings(
    max_examples=30, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_policy_folder_edits = PolicyFolderEdits.TestCase


def test_an_edit_in_place_is_taken_up_without_the_pass_over_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit that leaves a file naming its service (a bound, a target) changes that file's
    policy alone; one that makes a file name another service takes the full pass."""
    monkeypatch.setattr(policy_files, "RACY_WINDOW_NS", 0)
    for number in range(5):
        (tmp_path / f"s{number}.yaml").write_text(policy(f"s{number}"))
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()
    before = dict(watcher.policies)
    passes: list[int] = []
    real_holders = policy_files._holders
    monkeypatch.setattr(policy_files, "_holders", lambda *a: passes.append(1) or real_holders(*a))

    (tmp_path / "s1.yaml").write_text(policy("s1", replicas=12))
    (tmp_path / "s3.yaml").write_text("service: s3\nmax_replica: 5\n")
    events = [said(e) for e in watcher.refresh()]

    assert events == ["reloaded s1.yaml changed s1", "rejected s3.yaml changed s3 kept last good "
                      "version"]
    assert passes == []
    assert watcher.policies[str(tmp_path / "s1.yaml")].max_replicas == 12
    assert watcher.policies[str(tmp_path / "s3.yaml")] is before[str(tmp_path / "s3.yaml")]
    assert watcher.policies is not before

    (tmp_path / "s2.yaml").write_text(policy("s9"))
    assert [said(e) for e in watcher.refresh()] == ["reloaded s2.yaml changed s9"]
    assert passes == [1]
    assert {p.service for p in watcher.policies.values()} == {"s0", "s1", "s3", "s4", "s9"}


def test_the_watcher_takes_one_file_as_it_takes_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "web.yaml"
    file.write_text(policy("web"))
    watcher = PolicyWatcher(file)

    assert [said(e) for e in watcher.refresh()] == ["reloaded web.yaml added web"]
    file.write_text(policy("web", 7))
    os.utime(file, ns=(0, 0))
    watcher.refresh()
    assert watcher.policies[str(file)].max_replicas == 7


def test_a_folder_missing_at_the_first_load_keeps_nothing(tmp_path: Path) -> None:
    (event,) = PolicyWatcher(tmp_path / "nowhere").refresh()

    assert (event.event, event.kept) == ("policy_rejected", "nothing")
