"""Value types shared by the core, the engine and the adapters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from autoscaler.core.balance import Spread
from autoscaler.core.placement import Placement


class Reason(StrEnum):
    """Why a decision ended where it did: the closed set the decision log uses."""

    PAUSED = "Paused"
    """An operator paused the agent for the service (or for all): nothing decided."""
    MANUAL_OVERRIDE = "ManualOverride"
    """Someone else set the replica count lately: left as it is for a while."""
    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    WITHIN_TOLERANCE = "WithinTolerance"
    METRICS_MISSING = "MetricsMissing"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    COOLDOWN = "Cooldown"
    PREDICTED_LOAD = "PredictedLoad"
    """A predictive floor set the count above what the other limits gave."""
    SCHEDULED = "Scheduled"
    """A planned window of the policy's `schedule` set the count: its min or its max."""
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    SCALED_TO_ZERO = "ScaledToZero"
    SERVICE_NOT_FOUND = "ServiceNotFound"
    NOT_REPLICATED = "NotReplicated"
    NOT_LEADER = "NotLeader"
    CONFLICT = "Conflict"
    UNSCHEDULABLE = "Unschedulable"
    """A raise held back: tasks of the service (of any change) wait for a node that can
    take them."""
    APPLY_FAILED = "ApplyFailed"
    DECISION_FAILED = "DecisionFailed"
    """An unexpected error while deciding for this service: nothing applied, the others go
    on."""


@dataclass(frozen=True)
class ServiceState:
    """A Swarm service as one listing saw it.

    `replicas` is None for a service that is not in replicated mode. `last_scaled_at` is when
    the replica count last changed, as the service itself records it (its `UpdatedAt` when
    the previous spec differs from the current one in the replica count only, the agent's
    record label aside); `replicas_changed_at` is its `UpdatedAt` when the last update
    changed the replica count, whatever else it changed; `updated_at` is its `UpdatedAt`,
    whatever the last update changed.
    """

    name: str
    id: str
    version: int
    replicas: int | None
    last_scaled_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas_changed_at: datetime | None = None
    placement: Placement | None = None
    """Where its tasks are (None: not known, as in the backtest)."""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """One service's decision for one tick: what was decided, why, and what became of it."""

    service: str
    strategy: str
    time: datetime
    reason: Reason
    message: str
    metrics: Mapping[str, float | None]
    policy_file: str
    dry_run: bool
    policy_source: str = "file"
    current_replicas: int | None = None
    spec_replicas: int | None = None
    recommended_replicas: int | None = None
    desired_replicas: int | None = None
    applied: bool = False
    applied_at: datetime | None = None
    """When the change was applied (the tick's time and how long into it)."""
    forecast: Mapping[str, Mapping[str, float | None]] | None = None
    """Predictive only: per metric, the forecast at the horizon and with its margin."""
    fallback_reason: str | None = None
    """Predictive only: why the forecast was not used (the target rule alone decided)."""
    placement: Placement | None = None
    """Where the service's tasks were (None: not known)."""
    min_replicas: int | None = None
    max_replicas: int | None = None
    """The bounds in force: the policy's, or as the windows of its `schedule` set them while
    they last (the policy's where nothing was decided: a pause, a manual override)."""
    targets: Mapping[str, float] = field(default_factory=dict)
    """Each metric's target per replica (the threshold strategy's: its scale-up bound)."""
    driven_by: str | None = None
    """The metric whose proposal set the rule's count (several metrics: the largest)."""
    balance: Spread | None = None
    """The per-task metric whose load spread least evenly over the tasks (None: none)."""
    imbalanced: bool = False
    """That load has been uneven for the policy's `balance.for`."""


@dataclass(frozen=True)
class Series:
    """One series of an instant query's answer."""

    labels: Mapping[str, str]
    value: float
