"""Hostile or careless edits of the policies folder while `autoscaler run` runs, an invalid
policy at its start, and a label problem of one service.

One agent serves the policy rows: three real services, each at 1 replica with a load that
keeps it there (WithinTolerance), their policies in a.yaml, pb.yaml and pc.yaml, and an
invalid broken.yaml from the start. Each row edits the folder and checks that every tick
after the edit still decided the services it should (a tick that blocked, crashed or dropped
a service would show), and that the agent said what it made of the edit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.conftest import (
    AgentProcess,
    Agents,
    LoadExporter,
    RunningPrometheus,
    Services,
    autoscaler,
    policy_document,
    set_loads,
    spec_replicas,
    wait_for,
    write_policy,
)

BROKEN = "service: nobody\nmax_replica: 3\nmetrics: [{name: load, query: up, target: 1}]\n"
BROKEN_PROBLEM = "max_replica: unknown key (did you mean 'max_replicas'?)"


@dataclass
class Shared:
    agent: AgentProcess
    folder: Path
    pa: str
    pb: str
    pc: str
    label_bad: str
    label_good: str

    @property
    def file_services(self) -> tuple[str, str, str]:
        return self.pa, self.pb, self.pc


@pytest.fixture(scope="module")
def shared(module_services: Services, module_agents: Agents, prometheus: RunningPrometheus,
           load_exporter: LoadExporter, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Shared]:
    pa, pb, pc, label_bad, label_good = module_services.create(
        ("pa", {}), ("pb", {}), ("pc", {}),
        ("lbad", {"labels": {"autoscaler.enable": "true", "autoscaler.max": "²"}}),
        ("lgood", {"labels": {"autoscaler.enable": "true", "autoscaler.max": "3"}}),
    )
    set_loads(prometheus, load_exporter,
              dict.fromkeys((pa, pb, pc, label_bad, label_good), 100.0))
    folder = tmp_path_factory.mktemp("policies")
    write_policy(folder / "a.yaml", pa)
    write_policy(folder / "pb.yaml", pb)
    write_policy(folder / "pc.yaml", pc)
    (folder / "broken.yaml").write_text(BROKEN)
    agent = module_agents.start("run", policies=folder, prometheus_url=prometheus.url,
                                name="policy-faults", wait_ticks=2)
    yield Shared(agent, folder, pa, pb, pc, label_bad, label_good)


def assert_every_tick_decided(agent: AgentProcess, services: tuple[str, ...], since: int,
                              ticks: int = 3) -> list[list[dict[str, Any]]]:
    """Wait for `ticks` ticks after `since`; each decided every one of `services`, held
    them at 1 replica, and none took long. The ticks, their events."""
    agent.wait_ticks(ticks + 1, since=since)
    done = agent.ticks(since)[1:]  # the first may have begun before `since`
    for tick in done:
        decided = {e["service"]: e for e in tick if e.get("event") == "scaling_decision"}
        for service in services:
            assert service in decided, f"a tick without a decision for {service}: {tick}"
            assert decided[service]["reason"] in ("WithinTolerance", "NotLeader"), decided
            assert decided[service]["desired_replicas"] == 1, decided[service]
        summary = tick[-1]
        assert summary["event"] == "tick_summary" and summary["seconds"] < 1, summary
    agent.assert_healthy()
    agent.no_crash()
    return done


def rejected(agent: AgentProcess, file: Path, since: int = 0) -> list[dict[str, Any]]:
    return [e for e in agent.events("policy_rejected", since) if e.get("file") == str(file)]


def test_an_invalid_policy_at_start(shared: Shared) -> None:
    """`run` starts with the valid policies and says what is wrong with the other;
    `validate` exits 2 on it."""
    agent = shared.agent
    first_tick = agent.ticks()[0]
    (problem,) = [e for e in first_tick if e.get("event") == "policy_rejected"]
    assert problem["file"] == str(shared.folder / "broken.yaml")
    assert problem["kept"] == "nothing"
    assert any(BROKEN_PROBLEM in p for p in problem["problems"]), problem
    (loaded,) = [e for e in first_tick if e.get("event") == "policies_loaded"]
    assert loaded["policies"] == 3
    decided = {e["service"] for e in first_tick if e.get("event") == "scaling_decision"}
    assert decided == set(shared.file_services)
    assert len(rejected(agent, shared.folder / "broken.yaml")) == 1, "said once, not per tick"

    checked = autoscaler("validate", str(shared.folder / "broken.yaml"))
    assert checked.returncode == 2
    assert f"{shared.folder / 'broken.yaml'}: {BROKEN_PROBLEM}" in checked.stdout
    valid = autoscaler("validate", *(str(shared.folder / n) for n in ("pb.yaml", "pc.yaml")))
    assert valid.returncode == 0, valid.stdout
    agent.assert_healthy()


def test_a_policy_file_renamed_while_running(shared: Shared) -> None:
    """`mv a.yaml web.yaml`: the service stays managed, its decisions go on under the new
    file name, without a tick that missed it."""
    agent = shared.agent
    since = agent.mark()
    os.rename(shared.folder / "a.yaml", shared.folder / "web.yaml")
    agent.wait_decision(shared.pa, lambda d: d["policy_file"] == str(shared.folder / "web.yaml"),
                        since=since, what="a decision under web.yaml")
    reloads = [(e["file"], e["change"], e.get("service"))
               for e in agent.events("policy_reloaded", since)]
    assert reloads == [(str(shared.folder / "a.yaml"), "removed", shared.pa),
                       (str(shared.folder / "web.yaml"), "added", shared.pa)], reloads
    ticks = assert_every_tick_decided(agent, shared.file_services, since)
    for tick in ticks:
        (decision,) = [e for e in tick if e.get("service") == shared.pa
                       and e["event"] == "scaling_decision"]
        assert decision["policy_file"] in (str(shared.folder / n) for n in ("a.yaml", "web.yaml"))
    assert spec_replicas(shared.pa) == 1


def test_a_second_file_for_a_service_takes_over_when_the_first_goes(shared: Shared) -> None:
    agent, folder, service = shared.agent, shared.folder, shared.pb
    since = agent.mark()
    write_policy(folder / "pb-copy.yaml", service, max_replicas=4)
    wait_for("the copy's rejection", lambda: rejected(agent, folder / "pb-copy.yaml", since), 30)
    (copy,) = rejected(agent, folder / "pb-copy.yaml", since)
    assert copy["kept"] == "nothing"
    assert copy["problems"] == [f"{folder / 'pb-copy.yaml'}: service: service {service!r} "
                                f"already has a policy in {folder / 'pb.yaml'}"], copy
    ticks = assert_every_tick_decided(agent, shared.file_services, since)
    assert {e["policy_file"] for t in ticks for e in t
            if e.get("service") == service and e["event"] == "scaling_decision"} == {
        str(folder / "pb.yaml")}

    since = agent.mark()
    (folder / "pb.yaml").unlink()
    agent.wait_decision(service, lambda d: d["policy_file"] == str(folder / "pb-copy.yaml"),
                        since=since, what="a decision under pb-copy.yaml")
    reloads = [(e["file"], e["change"], e.get("replaces"))
               for e in agent.events("policy_reloaded", since)]
    assert reloads == [(str(folder / "pb.yaml"), "removed", None),
                       (str(folder / "pb-copy.yaml"), "duplicate resolved",
                        str(folder / "pb.yaml"))], reloads
    assert_every_tick_decided(agent, shared.file_services, since)


def test_a_fifo_named_like_a_policy_does_not_block_the_tick(shared: Shared) -> None:
    agent, fifo = shared.agent, shared.folder / "x.yaml"
    since = agent.mark()
    os.mkfifo(fifo)
    try:
        wait_for("the FIFO's rejection", lambda: rejected(agent, fifo, since), 30)
        (problem,) = rejected(agent, fifo, since)
        assert problem["problems"] == [f"{fifo}: is not a readable file: a FIFO, not a regular "
                                       "file (only regular files are read)"], problem
        assert_every_tick_decided(agent, shared.file_services, since)
        assert len(rejected(agent, fifo, since)) == 1, "said once, not per tick"
    finally:
        fifo.unlink()


def test_a_symlink_to_dev_zero_and_a_2_mb_file_are_rejected(shared: Shared) -> None:
    agent, zero, big = shared.agent, shared.folder / "zero.yaml", shared.folder / "big.yaml"
    since = agent.mark()
    zero.symlink_to("/dev/zero")
    big.write_text(yaml.safe_dump(policy_document(shared.pc)) + "#" * (2 * 1024 * 1024) + "\n")
    size = big.stat().st_size
    try:
        wait_for("both rejections", lambda: rejected(agent, zero, since)
                 and rejected(agent, big, since), 30)
        assert rejected(agent, zero, since)[0]["problems"] == [
            f"{zero}: is not a readable file: a symlink to a character device, not a regular "
            "file (only regular files are read)"]
        assert rejected(agent, big, since)[0]["problems"] == [
            f"{big}: is {size:,} bytes, over the 1 MiB cap on a policy file (1,048,576 bytes)"]
        assert_every_tick_decided(agent, shared.file_services, since)
        rss = int(next(line.split()[1] for line in
                       Path(f"/proc/{agent.process.pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:")))
        assert rss < 300_000, f"the agent holds {rss} kB"
    finally:
        zero.unlink()
        big.unlink()


def test_a_list_where_a_name_should_be_is_a_rejected_policy(shared: Shared) -> None:
    """`name: [a, b]`, `service: [a, b]`, a metric's `name: [a, b]`, a `? [a, b]` key, and a
    service name with a backtick or a newline (which would break the shared `{{services}}`
    query of every service in it): each file is rejected with what is wrong
    (policy_rejected), never a crash of the tick (tick_failed), and the other services are
    decided every tick."""
    agent, folder = shared.agent, shared.folder
    pc = policy_document(shared.pc)
    name_rule = ("service: must be a Swarm service name: ASCII letters, digits, - and _, "
                 "beginning and ending with a letter or digit, got ")
    files = {
        folder / "top-name.yaml": (yaml.safe_dump({**pc, "name": ["a", "b"]}),
                                   "name: unknown key"),
        folder / "service-list.yaml": (yaml.safe_dump({**pc, "service": ["a", "b"]}),
                                       "service: must be text, got a list"),
        folder / "metric-name.yaml": (yaml.safe_dump(policy_document(shared.pc, metrics=[
            {"name": ["a", "b"], "query": "up", "target": 1}])),
            "metrics[0].name: must be text, got a list"),
        folder / "list-key.yaml": (yaml.safe_dump(pc) + "? [a, b]\n: 1\n",
                                   "a key must be text, got a list (line "
                                   f"{len(yaml.safe_dump(pc).splitlines()) + 1})"),
        folder / "backtick.yaml": (yaml.safe_dump({**pc, "service": f"{shared.pc}`x"}),
                                   f"{name_rule}'{shared.pc}`x'"),
        folder / "newline.yaml": (yaml.safe_dump({**pc, "service": f"{shared.pc}\nx"}),
                                  f"{name_rule}'{shared.pc}\\nx'"),
    }
    since = agent.mark()
    for path, (text, _) in files.items():
        path.write_text(text)
    try:
        wait_for("every rejection", lambda: all(rejected(agent, p, since) for p in files), 30)
        for path, (_, says) in files.items():
            (problem,) = rejected(agent, path, since)
            assert problem["problems"] == [f"{path}: {says}"], problem
            assert problem["kept"] == "nothing"
        assert_every_tick_decided(agent, shared.file_services, since)
        assert not agent.events("tick_failed")
    finally:
        for path in files:
            path.unlink()


def test_a_label_problem_is_the_service_s_alone(
    shared: Shared, agents: Agents, prometheus: RunningPrometheus, tmp_path: Path,
) -> None:
    """With a label template, `autoscaler.enable=true` opts a service in; a service whose
    `autoscaler.max` is `²` is left alone with a policy_rejected line naming the label, and
    another labelled service is decided every tick. (dry-run: a template opts in every
    labelled service of the Swarm, which this agent must not touch.)"""
    templates = tmp_path / "templates"
    templates.mkdir()
    template = {k: v for k, v in policy_document("unused").items() if k != "service"}
    (templates / "default.yaml").write_text(yaml.safe_dump(template))
    agent = agents.start("dry-run", policies=tmp_path, prometheus_url=prometheus.url,
                         name="labels", wait_ticks=4)
    problems = [e for e in agent.events("policy_rejected")
                if e.get("service") == shared.label_bad]
    assert problems == [{**problems[0], "policy_source": "label", "problems": [
        f"labels of service {shared.label_bad}: autoscaler.max: must be a whole number from 0 "
        "to 10000 in the digits 0-9 alone, got '²'"]}], problems
    assert not agent.decisions(shared.label_bad)
    for tick in agent.ticks()[1:]:
        (good,) = [e for e in tick if e.get("event") == "scaling_decision"
                   and e["service"] == shared.label_good]
        assert (good["policy_source"], good["policy_file"], good["reason"]) == (
            "label", str(templates / "default.yaml"), "WithinTolerance"), good
    agent.assert_healthy()
    agent.no_crash()
    assert spec_replicas(shared.label_bad) == 1
