"""load_policies: policy files and folders on disk, checked each and against each other.

Every reader of policy files reads only regular files (or symlinks to one) of at most
MAX_POLICY_BYTES: a FIFO, a device, a socket or a huge file is reported without blocking and
without being read, and a FIFO, device or socket without even being opened."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from autoscaler.core.spec import PolicyProblem
from autoscaler.offline.commands import load_backtest_policies
from autoscaler.policy_files import (
    MAX_POLICY_BYTES,
    PolicyWatcher,
    load_policies,
    read_policy_bytes,
    read_policy_file,
)

T = TypeVar("T")


def policy_text(service: str) -> str:
    return (
        f"service: {service}\n"
        "max_replicas: 5\n"
        "metrics:\n"
        "  - {name: rps, query: q, target: 10}\n"
    )


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_folder_of_valid_policies(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", policy_text("shop_web"))
    write(tmp_path / "b.yml", policy_text("shop-api"))
    write(tmp_path / "README.md", "not a policy")
    write(tmp_path / "notes.txt", "service: [")
    write(tmp_path / ".hidden.yaml", "service: [")
    write(tmp_path / "deeper" / "c.yaml", "service: [")
    loaded = load_policies([tmp_path])
    assert loaded.valid, [str(p) for p in loaded.problems]
    assert sorted(p.service for p in loaded.policies.values()) == ["shop-api", "shop_web"]
    assert set(loaded.policies) == {str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")}


def test_which_names_are_policy_files_and_their_order(tmp_path: Path) -> None:
    """`*.yaml` and `*.yml`, not hidden, in the order of their paths (Path's rule, as was)."""
    names = ["b.yml", "B.yaml", "a.b.yaml", "a-b.yaml", "a_b.yaml", "é.yaml", "x.yaml.bak",
             "x.YAML", "yaml", ".yaml", ".h.yml", "z.yaml~", "e. yaml", "f.yaml "]
    for name in names:
        write(tmp_path / name, policy_text(f"s{names.index(name)}"))
    expected = sorted(p for p in tmp_path.iterdir()
                      if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))

    loaded = load_policies([tmp_path])
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    assert list(loaded.policies) == [str(p) for p in expected] == list(watcher.policies)
    assert [Path(p).name for p in loaded.policies] == [
        "B.yaml", "a-b.yaml", "a.b.yaml", "a_b.yaml", "b.yml", "é.yaml"]


def test_files_named_directly(tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "a.yaml", policy_text("a"))
    second = write(tmp_path / "two" / "b.yaml", policy_text("b"))
    loaded = load_policies([str(first), second])
    assert loaded.valid
    assert {p.service for p in loaded.policies.values()} == {"a", "b"}


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("max_replicas: 4\nmetrics: [{name: rps, query: q, target: 10}]\n", "",
                 id="a-template"),
    pytest.param(policy_text("web"), "a template names no service", id="a-policy-in-its-place"),
])
def test_a_file_named_alone_in_a_templates_folder_is_read_as_a_template(
    tmp_path: Path, text: str, problem: str,
) -> None:
    """As the folder reads it: `validate policies/templates/web.yaml` asked for a service."""
    template = write(tmp_path / "templates" / "web.yaml", text)

    loaded = load_policies([template])

    assert [problem in p.message for p in loaded.problems] == ([True] if problem else [])
    assert list(loaded.templates) == ([] if problem else ["web"])
    assert not loaded.policies


def test_same_service_in_two_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", policy_text("shop_web"))
    write(tmp_path / "b.yaml", policy_text("shop_web"))
    loaded = load_policies([tmp_path])
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.file == str(tmp_path / "b.yaml")
    assert problem.key == "service"
    assert "'shop_web' already has a policy in" in problem.message
    assert str(tmp_path / "a.yaml") in problem.message
    assert list(loaded.policies) == [str(tmp_path / "a.yaml")]


def test_same_template_name_in_two_files(tmp_path: Path) -> None:
    metrics = "metrics: [{name: rps, query: q, target: 10}]\n"
    write(tmp_path / "templates" / "default.yaml", "max_replicas: 4\n" + metrics)
    write(tmp_path / "templates" / "default.yml", "max_replicas: 9\n" + metrics)
    loaded = load_policies([tmp_path])
    [problem] = loaded.problems
    assert problem.file == str(tmp_path / "templates" / "default.yml")
    assert "template 'default' is already defined in" in problem.message
    assert loaded.templates["default"].document["max_replicas"] == 4


def test_same_service_across_paths(tmp_path: Path) -> None:
    first = write(tmp_path / "x" / "web.yaml", policy_text("web"))
    second = write(tmp_path / "y" / "web.yml", policy_text("web"))
    loaded = load_policies([first, second])
    assert [(p.file, p.key) for p in loaded.problems] == [(str(second), "service")]


def test_folder_named_like_a_policy_is_not_a_regular_file(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", policy_text("web"))
    (tmp_path / "x.yaml").mkdir()
    loaded = load_policies([tmp_path])
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.file == str(tmp_path / "x.yaml")
    assert "is not a readable file: a folder, not a regular file" in problem.message
    assert [p.service for p in loaded.policies.values()] == ["web"]


def test_folder_named_like_a_policy_given_directly(tmp_path: Path) -> None:
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    loaded = load_policies([folder])
    assert not loaded.valid
    assert [p.file for p in loaded.problems] == [str(folder)]
    assert not loaded.policies


@pytest.mark.parametrize(
    "name",
    [pytest.param("gone.yaml", id="missing-file"), pytest.param("gone", id="missing-folder")],
)
def test_missing_path(tmp_path: Path, name: str) -> None:
    loaded = load_policies([tmp_path / name])
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.file == str(tmp_path / name)
    assert "no such file or folder" in problem.message


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param({}, id="empty-folder"),
        pytest.param({"README.md": "hello", "policy.json": "{}"}, id="other-files-only"),
        pytest.param({"sub/a.yaml": policy_text("a")}, id="policy-only-deeper"),
    ],
)
def test_folder_with_no_policy(tmp_path: Path, contents: dict[str, str]) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name, text in contents.items():
        write(folder / name, text)
    loaded = load_policies([folder])
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.file == str(folder)
    assert "holds no policy file" in problem.message


def test_every_problem_of_every_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", b"service: [\n")
    write(tmp_path / "b.yaml", b"")
    write(tmp_path / "c.yaml", b"\xff\xfe")
    write(tmp_path / "d.yaml", "service: d\nmax_replica: 3\nmetrics: []\n")
    write(tmp_path / "e.yaml", policy_text("e"))
    loaded = load_policies([tmp_path, tmp_path / "missing.yaml"])
    by_file: dict[str, list[str]] = {}
    for problem in loaded.problems:
        by_file.setdefault(Path(problem.file).name, []).append(f"{problem.key}: {problem.message}")
    assert set(by_file) == {"a.yaml", "b.yaml", "c.yaml", "d.yaml", "missing.yaml"}
    assert any("not valid YAML" in m for m in by_file["a.yaml"])
    assert any("is empty" in m for m in by_file["b.yaml"])
    assert any("not UTF-8" in m for m in by_file["c.yaml"])
    assert any("did you mean 'max_replicas'" in m for m in by_file["d.yaml"])
    assert any(m.startswith("metrics: ") for m in by_file["d.yaml"])
    assert [p.service for p in loaded.policies.values()] == ["e"]


def within(call: Callable[[], T], seconds: float = 5.0) -> T:
    """`call()`, or a failed test if it has not returned after `seconds`. The call runs in a
    daemon thread, so a reader blocked forever is left behind instead of hanging the run."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still blocked after {seconds:g} s")
    if errors:
        raise errors[0]
    return results[0]


HUGE = 50 * 2**20


def fifo(path: Path) -> None:
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(path))


def folder(path: Path) -> None:
    path.mkdir()


def huge(path: Path) -> None:
    with path.open("wb") as file:
        file.truncate(HUGE)


def symlink_to(make: Callable[[Path], None] | str) -> Callable[[Path], None]:
    """A symlink to a path made by `make` beside it (or to the path `make` names)."""
    def link(path: Path) -> None:
        if isinstance(make, str):
            os.symlink(make, path)
            return
        target = path.with_name("target")
        make(target)
        os.symlink(target, path)
    return link


NOT_READ = [
    pytest.param(folder, "a folder, not a regular file", id="folder"),
    pytest.param(fifo, "a FIFO, not a regular file", id="fifo"),
    pytest.param(unix_socket, "a socket, not a regular file", id="socket"),
    pytest.param(symlink_to("/dev/zero"), "a symlink to a character device, not a regular file",
                 id="symlink-to-dev-zero"),
    pytest.param(symlink_to(fifo), "a symlink to a FIFO, not a regular file",
                 id="symlink-to-fifo"),
    pytest.param(symlink_to(folder), "a symlink to a folder, not a regular file",
                 id="symlink-to-folder"),
    pytest.param(symlink_to("missing.yaml"), "a symlink to nothing readable", id="broken-symlink"),
    pytest.param(huge, "is 52,428,800 bytes, over the 1 MiB cap on a policy file",
                 id="50-MB-file"),
    pytest.param(symlink_to(huge), "over the 1 MiB cap", id="symlink-to-50-MB-file"),
]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths os.open is called with from here on."""
    paths: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        paths.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return paths


@pytest.mark.parametrize(("make", "message"), NOT_READ)
def test_not_read_and_not_opened(tmp_path: Path, opened: list[str],
                                 make: Callable[[Path], None], message: str) -> None:
    path = tmp_path / "x.yaml"
    make(path)

    problem = within(lambda: read_policy_bytes(path))

    assert isinstance(problem, PolicyProblem)
    assert (problem.file, problem.key) == (str(path), "")
    assert message in problem.message
    assert str(path) not in opened


Reader = Callable[[Path], list[str]]


def by_watcher(path: Path) -> list[str]:
    return [p for event in PolicyWatcher(path.parent).refresh() for p in event.problems]


READERS = [
    pytest.param(lambda p: [str(x) for x in load_policies([p.parent]).problems],
                 id="load_policies-folder"),
    pytest.param(lambda p: [str(x) for x in load_policies([p]).problems], id="load_policies-file"),
    pytest.param(by_watcher, id="PolicyWatcher"),
    pytest.param(lambda p: [str(x) for x in load_backtest_policies([p])[1]], id="backtest"),
    pytest.param(lambda p: [str(x) for x in read_policy_file(p)], id="read_policy_file"),
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("make", "message"), [
    pytest.param(fifo, "a FIFO, not a regular file", id="fifo"),
    pytest.param(symlink_to("/dev/zero"), "a symlink to a character device", id="dev-zero"),
    pytest.param(huge, "over the 1 MiB cap", id="50-MB-file"),
])
def test_every_reader_reports_without_blocking(tmp_path: Path, reader: Reader,
                                               make: Callable[[Path], None],
                                               message: str) -> None:
    path = tmp_path / "policies" / "x.yaml"
    path.parent.mkdir()
    make(path)

    [problem] = within(lambda: reader(path))

    assert problem.startswith(f"{path}: is ")
    assert message in problem


@pytest.mark.parametrize(("size", "readable"), [
    pytest.param(0, True, id="empty"),
    pytest.param(MAX_POLICY_BYTES, True, id="at-the-cap"),
    pytest.param(MAX_POLICY_BYTES + 1, False, id="one-byte-over"),
])
def test_the_size_cap(tmp_path: Path, size: int, readable: bool) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"#" * size)

    read = read_policy_bytes(path)

    if readable:
        assert read == b"#" * size
    else:
        assert isinstance(read, PolicyProblem)
        assert read.message == (f"is {size:,} bytes, over the 1 MiB cap on a policy file "
                                "(1,048,576 bytes)")


def test_a_file_that_grew_after_its_stat_is_read_no_further_than_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"#" * (2 * MAX_POLICY_BYTES))
    real_lstat, real_read = os.lstat, os.read
    was_read: list[int] = []

    def small_lstat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        found = real_lstat(target, *args, **kwargs)
        if str(target) != str(path):
            return found
        fields = list(found)
        fields[6] = 10
        return os.stat_result(fields)

    def counting_read(descriptor: int, size: int) -> bytes:
        chunk = real_read(descriptor, size)
        was_read.append(len(chunk))
        return chunk

    monkeypatch.setattr(os, "lstat", small_lstat)
    monkeypatch.setattr(os, "read", counting_read)
    read = read_policy_bytes(path)

    assert isinstance(read, PolicyProblem)
    assert read.message == "is over the 1 MiB cap on a policy file (1,048,576 bytes)"
    assert sum(was_read) == MAX_POLICY_BYTES + 1


def test_a_fifo_swapped_in_after_the_stat_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stat said regular file, then a FIFO took its place: the non-blocking open and the
    second check on the open file catch it."""
    regular, path = tmp_path / "regular.yaml", tmp_path / "x.yaml"
    regular.write_text(policy_text("web"))
    os.mkfifo(path)
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda target, *args, **kwargs: real_lstat(
        regular if str(target) == str(path) else target, *args, **kwargs))

    read = within(lambda: read_policy_bytes(path))

    assert isinstance(read, PolicyProblem)
    assert "a FIFO, not a regular file" in read.message


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "web.policy"
    target.parent.mkdir()
    target.write_text(policy_text("web"))
    (tmp_path / "policies").mkdir()
    os.symlink(target, tmp_path / "policies" / "web.yaml")

    loaded = load_policies([tmp_path / "policies"])

    assert loaded.valid, [str(p) for p in loaded.problems]
    assert [p.service for p in loaded.policies.values()] == ["web"]
