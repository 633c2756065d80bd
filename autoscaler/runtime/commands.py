"""The commands of the live agent: validate, run and dry-run."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from autoscaler.bootstrap import build_live
from autoscaler.core.labels import DEFAULT_TEMPLATE, ENABLE_LABEL, TEMPLATE_LABEL
from autoscaler.core.schedule import describe, describe_occurrence, upcoming
from autoscaler.core.text import printable
from autoscaler.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNREACHABLE
from autoscaler.policy_files import (
    PolicySet,
    PolicyWatcher,
    load_alternatives,
    load_policies,
    passed_over,
)
from autoscaler.runtime.agent import Agent, share_one_malloc_arena, tune_garbage_collector
from autoscaler.runtime.logs import configure_logging
from autoscaler.runtime.settings import Settings
from autoscaler.runtime.telemetry import Telemetry


def print_problems(policy_set: PolicySet, out: TextIO) -> None:
    for problem in policy_set.problems:
        print(printable(str(problem)), file=out)
    files = {p.file for p in policy_set.problems}
    count = len(policy_set.problems)
    print(
        f"{count} problem{'s' if count != 1 else ''} in {len(files)} "
        f"file{'s' if len(files) != 1 else ''}",
        file=out,
    )


NEXT_WINDOWS = 3
"""How many of each schedule entry's next windows `validate` prints."""


def validate(paths: Sequence[Path], now: datetime | None = None, *,
             alternatives: bool = False) -> int:
    """Every problem of every file at once; exit 2 if there is any. For a valid policy with
    a `schedule`, each entry's next windows after `now` (default: the clock's).
    `alternatives`: as policies to compare in a backtest (`load_alternatives`)."""
    if alternatives:
        policy_set, notes = load_alternatives(paths)
    else:
        policy_set = load_policies(paths)
        notes = [f"{file}: the agent passes this file over: it reads only the files named "
                 "*.yaml or *.yml (in lower case, not hidden) of its policies folder"
                 for file in passed_over(paths)]
    for note in notes:
        print(printable(f"note: {note}"))
    if not policy_set.valid:
        print_problems(policy_set, sys.stdout)
        if any(p.key == "service" and "already has a policy" in p.message
               for p in policy_set.problems):
            print("(alternatives for one service, to compare in backtest or tune: "
                  "validate --alternatives)")
        return EXIT_BAD_INPUT
    now = now or datetime.now(UTC)
    for file, policy in policy_set.policies.items():
        print(printable(f"ok {file}: service {policy.service}, strategy {policy.strategy}, "
                        f"{policy.min_replicas}..{policy.max_replicas} replicas"))
        for index, window in enumerate(policy.schedule):
            print(printable(f"  {describe(index, window)}"))
            windows = upcoming(window, now, NEXT_WINDOWS)
            for occurrence in windows:
                print(printable(f"    {describe_occurrence(window, occurrence, now)}"))
            if not windows:
                print("    no window to come: it has ended")
    for template in policy_set.templates.values():
        print(printable(f"ok {template.file}: {_template_use(template.name)}"))
    return EXIT_OK


def _template_use(name: str) -> str:
    """Which services a valid label template applies to: said, so that a folder of templates
    alone does not validate in silence."""
    chosen = f"{TEMPLATE_LABEL}={name}"
    if name == DEFAULT_TEMPLATE:
        chosen += f" or no {TEMPLATE_LABEL} label"
    return f"template {name!r}, for services labelled {ENABLE_LABEL}=true with {chosen}"


def build_agent(settings: Settings) -> Agent:
    """The agent for `settings`, reading its policies from `settings.policies`."""
    parts = build_live(prometheus=settings.prometheus, interval=settings.interval,
                       dry_run=settings.dry_run, lease_label=settings.lease,
                       apply_workers=settings.apply_workers, log_holds=settings.log_holds)
    return Agent(parts.engine, interval=settings.interval,
                 telemetry=Telemetry(interval=settings.interval),
                 watcher=PolicyWatcher(settings.policies), history=parts.history,
                 leadership=parts.leadership)


def run(settings: Settings) -> int:
    """Run the agent (or one tick of it). It starts with the policies that are valid and
    logs each invalid one, as it does when a file goes bad while it runs."""
    if not settings.policies.exists():
        # Later, a folder that goes away keeps the last good policies; at the start it is a
        # mistyped path, and an agent that manages nothing would look healthy.
        print(f"autoscaler: the policies folder {settings.policies} does not exist (give "
              "--policies or AUTOSCALER_POLICIES)", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_logging(settings.log_format)
    tune_garbage_collector()
    share_one_malloc_arena()
    agent = build_agent(settings)
    if settings.once:
        agent.retrain()
        report = agent.tick()
        agent.close()
        if report is None or report.listing_error is not None or report.every_query_failed:
            return EXIT_UNREACHABLE
        return EXIT_OK
    if not agent.run_forever(port=settings.port, listen=settings.listen):
        print(f"autoscaler: cannot serve /healthz, /readyz and /metrics on "
              f"{settings.listen}:{settings.port}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _exit_now_if_a_tick_hangs(EXIT_OK)
    return EXIT_OK


def _exit_now_if_a_tick_hangs(code: int) -> None:
    """A tick abandoned at SIGTERM may still wait on a dependency in a worker thread, which
    the interpreter would wait for at exit (the scheduler's pool joins its workers, daemon
    or not): end the process at once instead. The lease is given up and the log flushed."""
    if any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
