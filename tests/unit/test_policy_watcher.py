"""Following edits of the policies folder: take valid ones, keep the last good version."""

from __future__ import annotations

from pathlib import Path

from autoscaler.policy_files import PolicyWatcher, ReloadEvent, load_policies

WEB = "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n"
API = "service: api\nmax_replicas: 3\nmetrics: [{name: rps, query: q, target: 10}]\n"
TEMPLATE = "max_replicas: 4\nmetrics: [{name: rps, query: q, target: 10}]\n"


def summary(events: list[ReloadEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, Path(e.file).name, e.change) for e in events]


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

    (tmp_path / "web.yaml").write_text(WEB.replace("max_replicas", "max_replica"))
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
    assert "already has a policy" in event.problems[0]
    assert list(watcher.policies) == [str(tmp_path / "web.yaml")]


def test_added_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    watcher = PolicyWatcher(tmp_path)
    watcher.refresh()

    (tmp_path / "api.yml").write_text(API)
    (tmp_path / "web.yaml").unlink()

    assert summary(watcher.refresh()) == [("policy_reloaded", "api.yml", "added"),
                                          ("policy_reloaded", "web.yaml", "removed")]
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
