"""The long-running process: an interval job that ticks the engine, signal handling, and
the HTTP endpoints /healthz, /readyz and /metrics."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from autoscaler.adapters.decision_log import tick_counts
from autoscaler.adapters.http import serve
from autoscaler.core.ports import HistorySource, Leadership, Training
from autoscaler.engine import Engine, TickReport
from autoscaler.policy_files import PolicyWatcher
from autoscaler.runtime.telemetry import Telemetry

log = structlog.get_logger("autoscaler.runtime.agent")

T = TypeVar("T")

RETRAIN_CHECK = timedelta(minutes=1)
"""How often the retrain job looks for predictive policies due for training."""
FIRST_TRAINING_AFTER = timedelta(seconds=1)
"""The first trainings start this long after the first tick, which takes the lock first."""
STOP_GRACE = 3.0
"""Seconds SIGTERM waits for the tick in flight before the agent stops without it: with the
lease's release (at most one second) it ends within 5 s whatever a tick waits on."""
SIGNAL_POLL = 0.2
"""Seconds between two looks of the main loop at the signals received."""


@dataclass
class Signalled:
    """The signals received, as plain flags that a handler sets and nothing more. A handler
    runs on the main thread between any two of its steps, and within another handler when
    signals come faster than it ends: one that took a lock (as `threading.Event.set` does)
    waited for ever on that thread's own hold of it, or nested until a RecursionError (a
    storm of SIGHUPs stopped the agent in under a second)."""

    stop: bool = False
    hangup: bool = False


class Agent:
    def __init__(
        self,
        engine: Engine,
        *,
        interval: timedelta,
        telemetry: Telemetry,
        watcher: PolicyWatcher,
        history: HistorySource,
        leadership: Leadership | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._telemetry = telemetry
        self._watcher = watcher
        self._history = history
        self._leadership = leadership
        self._clock = clock
        self._started = time.monotonic()
        self._last_tick_done: float | None = None
        self._lock = threading.Lock()
        self._label_problems: dict[str, list[str]] = {}
        self._was_leader: bool | None = None
        self._readiness: dict[str, str | None] = {"prometheus": "no tick yet",
                                                  "docker": "no tick yet"}
        """Per dependency, why the last tick could not use it (None: it could)."""
        self._on_one_node: dict[str, bool] = {}
        self._imbalanced: dict[str, bool] = {}
        self._loaded_once = False

    def reload(self) -> None:
        """Take up changed, added and removed policy files; keep the last good version of a
        file that became invalid."""
        with self._lock:
            self._reload()

    def _reload(self) -> None:
        """Log what the refresh did: a line per file, except at the first load, which says
        in one `policies_loaded` line what it took up (a fleet's start is not ten thousand
        lines); a problem always has its own line."""
        first = not self._loaded_once
        loaded = 0
        events = self._watcher.refresh()
        for event in events:
            fields = {k: v for k, v in asdict(event).items() if v not in (None, ())}
            if event.event == "policy_rejected":
                self._telemetry.policy_rejected()
                log.warning(**fields)
            elif first and event.change == "added":
                loaded += 1
            else:
                log.info(**fields)
        self._loaded_once = True
        if first:
            loaded_fields = {"policies": len(self._watcher.policies),
                             "templates": len(self._watcher.templates), "files": loaded,
                             "folder": str(self._watcher.folder)}
            if self._watcher.policies or self._watcher.templates:
                log.info("policies_loaded", **loaded_fields)
            else:
                # Not an error (files may come later, the folder is read every tick), but a
                # mounted folder that is not the one meant looks just like this.
                log.warning("policies_loaded", **loaded_fields,
                            hint="no policy and no label template: nothing is scaled until a "
                                 "*.yaml file is added to this folder")
        self._engine.set_policies(self._watcher.policies, self._watcher.templates)
        if events:
            freeze_long_lived()

    def retrain(self) -> None:
        """Train the forecasters of the predictive policies that are due (the engine knows
        each policy's `retrain_every`) on their history in Prometheus. The tick lock is
        taken for one policy's training at a time, so that ticks go on between them: with
        many predictive policies due at once (the agent's start), holding it for all would
        hold the ticks for all their history queries and trainings. The history queries
        (many range requests each, at up to the query deadline each) run without it."""
        def start() -> Iterator[Training]:
            self._reload()
            return self._engine.retraining(self._clock(), self._history)

        def fetched(step: Training) -> bool:
            step.fetch()
            return True

        steps = self._retrain_part(start, locked=True)
        while steps is not None:
            step = self._retrain_part(lambda: next(steps, None), locked=True)
            if step is None or not self._retrain_part(partial(fetched, step), locked=False):
                return
            trained = self._retrain_part(partial(self._engine.train, step), locked=True)
            if trained is None:
                return
            for result in trained:
                fields = {"service": result.service, "metric": result.metric,
                          "points": result.points, "seconds": round(result.seconds, 3)}
                if result.failure is None:
                    log.info("forecaster_trained", **fields)
                else:
                    log.warning("forecaster_not_trained", reason=result.failure, **fields)

    def _retrain_part(self, part: Callable[[], T], *, locked: bool) -> T | None:
        """One part of `retrain`, with the tick lock if `locked`: its result, or None once a
        crash is logged and counted."""
        with self._lock if locked else nullcontext():
            try:
                return part()
            except Exception:
                log.exception("retrain_failed")
                self._telemetry.tick_crashed()
                return None

    def tick(self) -> TickReport | None:
        """Run one tick; a crash inside it is logged and counted, never raised."""
        with self._lock:
            began = time.monotonic()
            try:
                self._reload()
                report = self._engine.tick(self._clock())
            except Exception:
                log.exception("tick_failed")
                self._telemetry.tick_crashed()
                return None
            elapsed = time.monotonic() - began
            self._telemetry.observe(report, elapsed)
            self._log_tick(report, elapsed)
            if elapsed > self._interval.total_seconds():
                log.warning("tick_late", seconds=round(elapsed, 3),
                            interval_seconds=self._interval.total_seconds())
            self._readiness = readiness(report, self._readiness)
            self._telemetry.dependencies(self._readiness)
            self._last_tick_done = time.monotonic()
            return report

    def _log_tick(self, report: TickReport, seconds: float) -> None:
        """The tick's problems, and its `tick_summary` line (logged whatever --log-holds
        says; the decisions themselves are logged by the engine's sink)."""
        for query, error in report.query_errors.items():
            log.warning("prometheus_query_failed", query=query, error=error)
        if report.listing_error is not None:
            log.error("swarm_listing_failed", error=report.listing_error)
        else:
            self._log_leadership_and_services(report)
        log.info("tick_summary", **tick_counts(report.decisions), seconds=round(seconds, 3),
                 queries=report.queries, failed_queries=report.failed_queries)

    def _log_leadership_and_services(self, report: TickReport) -> None:
        """`leadership` only for an agent that takes the lease: dry-run takes none, and its
        `leader: true` read as if it held the lease that the acting agents share."""
        if report.leadership_error is not None:
            log.error("lease_unavailable", error=report.leadership_error)
        if self._leadership is not None and report.leader != self._was_leader:
            log.info("leadership", leader=report.leader)
            self._was_leader = report.leader
        problems = {service: [str(p) for p in found]
                    for service, found in report.label_problems.items()}
        for service, messages in problems.items():
            if self._label_problems.get(service) != messages:
                log.warning("policy_rejected", service=service, policy_source="label",
                            problems=messages)
        self._label_problems = problems
        self._log_availability(report)
        self._log_imbalance(report)

    def _log_imbalance(self, report: TickReport) -> None:
        """`load_imbalance` when a service's load stays uneven over its tasks, and a line
        when it evens out: once per change. What is known of each service is of this tick's
        services only: one gone is forgotten (a CI system's thousands of services a day
        would each have kept an entry), and one made again under its name is new."""
        imbalanced: dict[str, bool] = {}
        for decision in report.decisions:
            was = self._imbalanced.get(decision.service, False)
            if decision.imbalanced != was:
                balance = decision.balance
                fields = {} if balance is None else {
                    "metric": balance.metric, "tasks": balance.tasks,
                    "cv": round(balance.cv, 3), "hottest_share": round(balance.hottest_share, 3)}
                if decision.imbalanced:
                    log.warning("load_imbalance", service=decision.service, problem="the load "
                                "stays uneven over the tasks: more replicas would not help it",
                                **fields)
                else:
                    log.info("load_imbalance", service=decision.service, problem=None, **fields)
            imbalanced[decision.service] = decision.imbalanced
        self._imbalanced = imbalanced

    def _log_availability(self, report: TickReport) -> None:
        """A warning when a service's replicas all end up on one node while other nodes
        could run them, and a line when they spread again: once per change. Known only of the
        services this tick placed, as in `_log_imbalance`."""
        on_one_node: dict[str, bool] = {}
        for decision in report.decisions:
            placement = decision.placement
            if placement is None:
                continue
            risky = placement.on_one_node
            if risky != self._on_one_node.get(decision.service, False):
                fields = {"service": decision.service, "running": placement.running,
                          "nodes": placement.nodes}
                if risky:
                    log.warning("availability", problem="every running replica is on one "
                                "node while other nodes could run some", **fields)
                else:
                    log.info("availability", problem=None, **fields)
            on_one_node[decision.service] = risky
        self._on_one_node = on_one_node

    def close(self, *, wait: float | None = None) -> None:
        """Give up the lease, so that another agent can act at once; waiting at most `wait`
        seconds for Docker (None: as long as it takes)."""
        if self._leadership is None:
            return
        release = threading.Thread(target=self._leadership.release, name="release",
                                   daemon=True)
        release.start()
        release.join(wait)

    def healthy(self) -> bool:
        """A tick finished within the last three intervals (or the agent started since)."""
        last = self._last_tick_done if self._last_tick_done is not None else self._started
        return time.monotonic() - last <= 3 * self._interval.total_seconds()

    def health(self) -> tuple[bool, str]:
        """/healthz: the loop is alive and ticking; a lost dependency does not fail it."""
        ok = self.healthy()
        return ok, "ok" if ok else "no tick finished within three intervals"

    def ready(self) -> tuple[bool, str]:
        """/readyz: the last tick could read Prometheus and Docker."""
        failing = {name: why for name, why in self._readiness.items() if why is not None}
        if not failing:
            return True, "ready"
        return False, "; ".join(f"{name}: {why}" for name, why in sorted(failing.items()))

    def run_forever(self, *, port: int, listen: str = "0.0.0.0") -> bool:
        """Tick every interval until SIGTERM or SIGINT, waiting `STOP_GRACE` for the tick in
        flight; SIGHUP reloads the policies at once. False when the HTTP port cannot be
        served."""
        try:
            server = serve(port, host=listen, health=self.health, ready=self.ready,
                           metrics=self._telemetry.exposition) if port else None
        except OSError as error:
            log.error("http_server_failed", listen=listen, port=port, error=str(error))
            return False
        signalled = Signalled()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        before = {signum: signal.getsignal(signum) for signum in handled}
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(signalled, "stop", True))
        signal.signal(signal.SIGHUP, lambda *_: setattr(signalled, "hangup", True))
        scheduler = BackgroundScheduler(timezone=UTC)
        # Two jobs on their own threads, the first tick first: it does not wait for the
        # forecasters' trainings (a predictive policy decides by its target rule, `NoModel`,
        # until its model is trained); the trainings take the tick lock one policy at a time.
        scheduler.add_job(
            self.tick, "interval", seconds=self._interval.total_seconds(),
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
            misfire_grace_time=None, id="tick",
        )
        scheduler.add_job(
            self.retrain, "interval", seconds=RETRAIN_CHECK.total_seconds(),
            next_run_time=datetime.now(UTC) + FIRST_TRAINING_AFTER, max_instances=1,
            coalesce=True,
            misfire_grace_time=None, id="retrain",
        )
        scheduler.start()
        log.info("agent_started", interval_seconds=self._interval.total_seconds(),
                 listen=listen, port=port, policies=str(self._watcher.folder))
        try:
            while not signalled.stop:
                time.sleep(SIGNAL_POLL)
                catch_up_with_the_clock(scheduler, datetime.now(UTC))
                if signalled.hangup and self._lock.acquire(blocking=False):
                    # A tick in flight reloads at its start anyway: never block the signal
                    # loop, so that SIGTERM is heard at once.
                    signalled.hangup = False
                    try:
                        log.info("sighup_reload")
                        self._reload()
                    finally:
                        self._lock.release()
        finally:
            log.info("agent_stopping")
            scheduler.shutdown(wait=False)
            finished = self._lock.acquire(timeout=STOP_GRACE)
            if finished:
                self._lock.release()
            else:
                log.warning("tick_abandoned", waited_seconds=STOP_GRACE)
            self.close(wait=1.0)
            if server is not None:
                server.shutdown()
            for signum, handler in before.items():
                if handler is not None:  # None: set outside Python, not restorable
                    signal.signal(signum, handler)
            log.info("agent_stopped")
        return True


def catch_up_with_the_clock(scheduler: BaseScheduler, now: datetime) -> None:
    """Run at once a job due more than its interval after `now`: the clock was set back
    since it was scheduled. APScheduler keeps its jobs' times on the wall clock, and set back
    an hour it ran no tick for that hour."""
    for job in scheduler.get_jobs():
        due, interval = job.next_run_time, getattr(job.trigger, "interval", None)
        if due is not None and interval is not None and due - now > interval:
            log.warning("clock_set_back", job=job.id, seconds=round((due - now).total_seconds()))
            job.modify(next_run_time=now)


GC_THRESHOLDS = (50_000, 20, 10)
"""The garbage collector's thresholds for the agent's process. A tick at 10,000 services
makes millions of objects: at Python's default (700, 10, 10) the collector ran about 650
young and 5 full collections a tick, 0.5 of 1.9 CPU seconds; at these, about 6 young ones
and no full one, 0.08 s."""


def tune_garbage_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


_M_ARENA_MAX = -8  # glibc's malloc.h


def share_one_malloc_arena() -> None:
    """Make glibc's malloc serve every thread from one arena, unless the operator set the
    number (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in GLIBC_TUNABLES). By default it
    gives threads arenas of their own, up to eight a core; a tick runs on whichever of the
    scheduler's threads is free, the applies on a pool's, /metrics on a thread a request, so
    a large fleet's memory of a tick (the listing, the answer, the /metrics page), freed,
    stayed held in several arenas at once. The agent's threads mostly allocate holding the
    GIL, one at a time, so they seldom wait for the shared arena. Call it before threads
    start; with another C library (musl), nothing is done."""
    if "MALLOC_ARENA_MAX" in os.environ or \
            "malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)


def freeze_long_lived() -> None:
    """Keep the objects alive now (the policies above all) out of the garbage collector's
    full collections, which otherwise walk them again and again: at 10,000 policies that
    was about 0.4 s of CPU a tick. Called when a refresh of the policies reported anything:
    what was frozen before is collected once more first, so that nothing dropped since
    leaks."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def readiness(report: TickReport, before: Mapping[str, str | None]) -> dict[str, str | None]:
    """Per dependency, why this tick could not use it (None: it could). A tick that ended
    at the Swarm listing, before asking Prometheus anything, leaves what was known of it
    `before`: not asked is not up."""
    prometheus = before.get("prometheus") if report.listing_error is not None else None
    if report.every_query_failed:
        prometheus = next(iter(report.query_errors.values()))
    docker = report.listing_error or report.leadership_error
    return {"prometheus": prometheus, "docker": docker}
