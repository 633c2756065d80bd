"""The predictive strategy's inputs to `decide`: each metric's forecast, and where the policy
run as `target` would be (the target-alone run, a floor under the forecast's count).

The engine (`ServiceDecisions`) asks the planner for every policy; for any strategy but
predictive it answers NO_PLAN. It keeps the forecasters (in the book) and each service's
target-alone run between ticks, and trains the forecasters when due.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from autoscaler.core.decide import NO_PLAN, Plan, decide
from autoscaler.core.limits import history_to_keep
from autoscaler.core.memory import ServiceMemory, as_of, remember, synced_shadow
from autoscaler.core.ports import HistorySource, Retrained, SourceUnavailable
from autoscaler.core.queries import QueryUse, plan_queries
from autoscaler.core.spec import Policy
from autoscaler.core.strategies import MetricForecast
from autoscaler.predictive.book import TOO_MANY_ACTIONS, ForecastBook


class PredictivePlanner:
    """`seeded` False starts each target-alone run with empty stabilization history instead
    of holding the first count seen (the backtest's start), as `ServiceDecisions` does."""

    def __init__(self, book: ForecastBook, *, seeded: bool = True) -> None:
        self.book = book
        self._seeded = seeded
        self._alone: dict[str, ServiceMemory] = {}
        self._pending: dict[str, tuple[ServiceMemory, datetime | None, int]] = {}
        """This tick's target-alone memories, when each run last changed its count before
        this tick, and its count, kept by `settle` once the spec is known."""

    def plan(self, policy: Policy, *, metrics: Mapping[str, float | None], spec: int,
             now: datetime, leader: bool, memory: ServiceMemory | None = None) -> Plan:
        """A target-alone run this planner does not have yet (the agent restarted, or the
        policy ran under another strategy) starts from the service's own `memory`: the
        changes its record holds limit that run's raises (rate limits, cooldown) as they
        limit the service's, so that its floor does not lift the count past them."""
        if policy.strategy != "predictive":
            return NO_PLAN
        previous = self._alone.get(policy.service)
        if previous is not None and not leader:
            # The leader's changes are not someone else's: they may be a forecast's raise.
            previous = replace(previous, seen_spec=spec)
        if previous is None or previous.seen_spec != spec:
            # Another strategy ran the tick before, or someone else set the count since (an
            # override that ended, or none): a raise held from before is no floor over it.
            self.book.release(policy.service, in_force=spec)
        found, fallback = self.book.forecast(policy, metrics, now)
        limited = {m.name for m in policy.metrics if m.limit}
        record = {name: {"value": f.value, "with_margin": f.with_margin}
                  | ({"worst_case": f.worst_case} if name in limited else {})
                  for name, f in found.items()}
        start = previous if previous is not None or memory is None \
            else replace(memory, shadow=spec, seen_spec=spec)
        alone, after = target_alone_step(policy, start, spec=spec, metrics=metrics,
                                         now=now, seeded=self._seeded,
                                         keep=history_to_keep(policy))
        changed_at = None if start is None else as_of(start, now).last_change_at
        self._pending[policy.service] = (after, changed_at, alone)
        detail = self.book.budget_note(policy.service) if fallback == TOO_MANY_ACTIONS else ""
        return Plan(forecasts=found, target_alone=alone, target_alone_changed_at=changed_at,
                    record=record, fallback=fallback,
                    note=fallback_note(found, fallback, detail))

    def settle(self, service: str, *, spec: int, in_force: int) -> None:
        """The forecasts' raises are held as far as the count in force (`in_force`: a dry
        run holds them on its shadow count as a run would on the spec); the target-alone
        run follows the spec (`spec`), where a change by someone else resets it, and its
        raise of this tick is kept only as far as the count in force: a raise that failed
        or was held back (`Unschedulable`) would have failed for `target` alone too, and a
        floor that ran ahead of it would later lift the count past the rate limits."""
        pending = self._pending.pop(service, None)
        self.book.settled(service, in_force, alone=pending[2] if pending else None)
        if pending is None:
            self._alone.pop(service, None)
            return
        memory, changed_before, _ = pending
        self._alone[service] = replace(raise_held_to(memory, in_force, changed_before),
                                       seen_spec=spec)

    def keep_only(self, services: Collection[str]) -> None:
        self._alone = {name: m for name, m in self._alone.items() if name in services}
        self.book.forget_all_but(services)

    def forget(self, service: str) -> None:
        """Forget one service: made again under its name, it is a new one."""
        self._alone.pop(service, None)
        self.book.forget(service)

    def retraining(self, policies: Sequence[Policy], now: datetime, history: HistorySource
                   ) -> Iterator[PolicyTraining]:
        for policy in policies:
            if policy.strategy != "predictive" or not self.book.due(policy, now):
                continue
            yield PolicyTraining(self.book, policy, now, history)


History = tuple[list[datetime], list[float | None]]


class PolicyTraining:
    """One predictive policy's training, in two parts so that the agent can run the slow
    one without the tick lock: `fetch` reads each metric's history (range queries, which
    touch nothing the ticks share), `train` fits the forecasters on it."""

    def __init__(self, book: ForecastBook, policy: Policy, now: datetime,
                 history: HistorySource) -> None:
        self.policy = policy
        self._book, self._now, self._history = book, now, history
        self._fetched: list[tuple[QueryUse, History | Retrained]] | None = None

    def fetch(self) -> None:
        self._fetched = [(use, self._history_of(use, rendered))
                         for rendered, uses in plan_queries([self.policy]).items()
                         for use in uses]

    def train(self) -> list[Retrained]:
        """Fit each metric's forecaster on what `fetch` read (fetched now if not yet), and
        mark the policy trained: each training's result."""
        if self._fetched is None:
            self.fetch()
        assert self._fetched is not None
        results = [found if isinstance(found, Retrained) else self._fit(use, found)
                   for use, found in self._fetched]
        self._book.trained(self.policy, self._now, ok=all(r.failure is None for r in results))
        return results

    def _history_of(self, use: QueryUse, rendered: str) -> History | Retrained:
        metric = next(m for m in self.policy.metrics if m.name == use.metric)
        settings = self._book.settings_for(self.policy, metric)
        try:
            # To `now` included: trainings run after a tick, whose value the forecaster has
            # seen; a history that ended a step before would leave that value out of the new
            # model's lags, a gap for as many ticks as it looks back.
            return self._history.history(
                rendered, service=self.policy.service, service_label=use.service_label,
                per_service=use.service is not None, start=self._now - settings.history,
                end=self._now + settings.step, step=settings.step,
            )
        except Exception as error:  # contained: even an answer no code expected fails this one
            detail = error if isinstance(error, SourceUnavailable) \
                else f"{type(error).__name__}: {error}"
            return Retrained(self.policy.service, use.metric, 0,
                             f"HistoryUnavailable: {detail}")

    def _fit(self, use: QueryUse, history: History) -> Retrained:
        times, values = history
        metric = next(m for m in self.policy.metrics if m.name == use.metric)
        forecaster = self._book.forecaster(self.policy, metric)
        started = time.perf_counter()
        try:
            reason = forecaster.train(times, values)
        except Exception as error:  # contained: one service's training, not all that follow
            reason = f"TrainingFailed: {type(error).__name__}: {error}"
        return Retrained(self.policy.service, use.metric, sum(v is not None for v in values),
                         reason, time.perf_counter() - started)


def target_alone_step(
    policy: Policy, memory: ServiceMemory | None, *, spec: int,
    metrics: Mapping[str, float | None], now: datetime, seeded: bool, keep: timedelta,
) -> tuple[int, ServiceMemory]:
    """What the predictive `policy` run as `target` would set at `now`, and that run's memory
    after this tick. It keeps its own count and history; a spec changed by someone else
    (not matching `seen_spec`, which `settle` sets after the apply) resets its count."""
    alone = as_of(synced_shadow(
        memory or ServiceMemory.first_seen(replicas=spec, now=now, seeded=seeded), spec), now)
    if alone.shadow == 0 < spec and policy.min_replicas > 0:
        # Its own scale to 0 (under a min of 0 then) would hold it at 0 for good now, as a
        # service at 0 is left alone, while the service is not at 0: `decide` would read
        # that 0 as `target` alone's count and hold back every raise of the target rule. It
        # starts again from the spec, as after a change by someone else.
        alone = replace(alone, shadow=spec)
    outcome = decide(policy.model_copy(update={"strategy": "target"}), current=alone.shadow,
                     metrics=metrics, memory=alone, last_change_at=alone.last_change_at,
                     now=now)
    return outcome.desired, remember(alone, now=now, recommended=outcome.remembered,
                                     change=outcome.desired - alone.shadow, keep=keep)


def raise_held_to(memory: ServiceMemory, in_force: int, changed_before: datetime | None
                  ) -> ServiceMemory:
    """The target-alone run's memory with its latest change, if a raise that took its count
    above `in_force`, cut to reach `in_force` at most (none if it started there or above);
    `changed_before` is when the run last changed its count before that raise."""
    if not memory.changes or memory.changes[-1][0] != memory.last_change_at \
            or memory.last_change_at == changed_before:
        return memory  # no change this tick
    at, change = memory.changes[-1]
    before = memory.shadow - change
    if change <= 0 or memory.shadow <= in_force:
        return memory
    kept = max(in_force - before, 0)
    return replace(memory, shadow=before + kept,
                   changes=memory.changes[:-1] + (((at, kept),) if kept else ()),
                   last_change_at=at if kept else changed_before)


def fallback_note(used: Mapping[str, MetricForecast], fallback: str | None,
                  detail: str = "") -> str:
    """What the decision's message says of metrics whose forecast was not used, and why
    (`detail`: more than the fall-back reason says)."""
    if not fallback:
        return ""
    why = f"{fallback}: {detail}" if detail else fallback
    unused = [name for name, forecast in used.items() if forecast.with_margin is None]
    if len(unused) == len(used):
        return f"; forecast not used ({why}): the target rule alone"
    return f"; forecast of {', '.join(unused)} not used ({why})"
