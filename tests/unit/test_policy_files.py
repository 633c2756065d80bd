"""load_policies: policy files and folders on disk, checked each and against each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.policy_files import load_policies


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


def test_files_named_directly(tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "a.yaml", policy_text("a"))
    second = write(tmp_path / "two" / "b.yaml", policy_text("b"))
    loaded = load_policies([str(first), second])
    assert loaded.valid
    assert {p.service for p in loaded.policies.values()} == {"a", "b"}


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


def test_same_service_across_paths(tmp_path: Path) -> None:
    first = write(tmp_path / "x" / "web.yaml", policy_text("web"))
    second = write(tmp_path / "y" / "web.yml", policy_text("web"))
    loaded = load_policies([first, second])
    assert [(p.file, p.key) for p in loaded.problems] == [(str(second), "service")]


def test_folder_named_like_a_policy_is_not_a_readable_file(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", policy_text("web"))
    (tmp_path / "x.yaml").mkdir()
    loaded = load_policies([tmp_path])
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.file == str(tmp_path / "x.yaml")
    assert "is not a readable file" in problem.message
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
