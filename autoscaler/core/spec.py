"""The policy file contract: YAML text in, a validated `Policy` or every problem out.

Pure: `parse_policy` takes the bytes of a file and returns values; reading files and
checking across files is done by `autoscaler.policy_files`.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeGuard

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic_core import ErrorDetails

from autoscaler.core.durations import format_duration, parse_duration
from autoscaler.core.schedule import cron_gap, cron_problem, time_zone_problem, to_utc, zone


def _duration(value: object) -> timedelta:
    """`parse_duration`, guarded for a policy file: a list or mapping is refused before a
    message writes it out whole (aliases make a few lines of YAML a list of millions), and
    a whole number too large for a float is too long rather than an OverflowError."""
    if not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration such as 30s, 5m or 1h, got {_shown(value)}")
    try:
        return parse_duration(value)
    except OverflowError:
        raise ValueError(f"must be at most 365d, got {_shown(value)}") from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]

SWARM_NAME_MAX = 63
_SWARM_NAME = re.compile(r"[a-zA-Z0-9](?:[-_a-zA-Z0-9]*[a-zA-Z0-9])?")
"""Swarm's rule for a service name (swarmkit's `validateAnnotations`, `isValidDNSName`),
written without nested repetition so that a long name cannot make it backtrack."""
_PROMETHEUS_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _service_name(name: str) -> str:
    """A name Swarm accepts: any other can name no service, and a quote, backslash or space
    in it would break the queries it is substituted into (`{{services}}`)."""
    if len(name) > SWARM_NAME_MAX:
        raise ValueError(f"must be at most {SWARM_NAME_MAX} characters, as Swarm requires of "
                         f"a service name, got {len(name)}")
    if not _SWARM_NAME.fullmatch(name):
        raise ValueError("must be a Swarm service name: ASCII letters, digits, - and _, beginning "
                         f"and ending with a letter or digit, got {_shown(name)}")
    return name


def _metric_name(name: str) -> str:
    """A name as Prometheus writes a metric's: it keys the value in the decision log and
    the explanations, where a space or a quote would make them ambiguous."""
    if not _PROMETHEUS_NAME.fullmatch(name):
        raise ValueError("must be a name of ASCII letters, digits, _ and :, not beginning with a "
                         f"digit (as a Prometheus metric name), got {_shown(name)}")
    return name


ALL_SERVICES = "{{services}}"
ONE_SERVICE = "{{service}}"
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")


def _query(query: str) -> str:
    """A query whose `{{...}}` is none of the placeholders: it would reach Prometheus as
    written, match no service, and leave the metric missing on every tick."""
    for written in _PLACEHOLDER.findall(query):
        if written not in (ALL_SERVICES, ONE_SERVICE):
            near = difflib.get_close_matches("".join(written.lower().split()),
                                             [ALL_SERVICES, ONE_SERVICE], n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"{written} is not a placeholder{hint}: a query may hold "
                             f"{ALL_SERVICES} (every managed service) and {ONE_SERVICE} "
                             "(this policy's)")
    return query


def _hold_only(value: object) -> object:
    """`hold` is what the agent does with missing metrics, and all it does: the key is
    accepted so that policies which spell it out stay valid."""
    if value != "hold":
        raise ValueError(
            "must be 'hold', the only behaviour (a missing metric is never read as zero: with "
            "every metric missing the count holds, and a missing one blocks a decrease), got "
            f"{_shown(value)}"
        )
    return value


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with one policy file, located by its key path."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else (
            f"{self.file}: {self.message}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _ScaleRules(_Strict):
    """One direction of `behavior` (HPA semantics)."""

    stabilization: Duration = timedelta(0)
    max_step: int | None = Field(default=None, ge=1)
    max_percent: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    period: Duration = timedelta(seconds=15)
    cooldown: Duration = timedelta(0)

    def step_limits(self, default_step: int | None) -> tuple[int | None, float | None]:
        """(max_step, max_percent) in force: those the file sets, else the defaults."""
        if self.max_step is None and self.max_percent is None:
            return default_step, 100.0
        return self.max_step, self.max_percent


class ScaleUpRules(_ScaleRules):
    def step_limits_in_force(self) -> tuple[int | None, float | None]:
        return self.step_limits(default_step=4)


class ScaleDownRules(_ScaleRules):
    stabilization: Duration = timedelta(minutes=5)

    def step_limits_in_force(self) -> tuple[int | None, float | None]:
        return self.step_limits(default_step=None)


class Behavior(_Strict):
    scale_up: ScaleUpRules = ScaleUpRules()
    scale_down: ScaleDownRules = ScaleDownRules()
    manual_override: Duration = timedelta(minutes=10)
    """How long a replica count someone else set is left as it is; 0s: never."""


class MetricSpec(_Strict):
    name: Annotated[str, AfterValidator(_metric_name)]
    query: Annotated[str, Field(min_length=1), AfterValidator(_query)]
    service_label: str = Field(default="service", min_length=1)
    target: float | None = Field(default=None, allow_inf_nan=False)
    limit: float | None = Field(default=None, allow_inf_nan=False)
    """Predictive: the value per replica at the edge of the SLO. The replicas must carry the
    forecast's worst case (`PredictiveSpec.worst_case_window`) at it."""
    scale_up_above: float | None = Field(default=None, allow_inf_nan=False)
    scale_down_below: float | None = Field(default=None, allow_inf_nan=False)
    per_task: bool = False
    """The query answers one series per task (each with the service label): the service's
    value is their sum, and how evenly they spread is recorded."""


Strategy = Literal["target", "threshold", "predictive"]


class PredictiveSpec(_Strict):
    """How the predictive strategy forecasts; every key has a default."""

    startup: Duration = timedelta(minutes=1)
    """How long a new replica takes to be ready."""
    horizon: Duration | None = None
    """How far ahead to forecast; default startup + one tick."""
    history: Duration = timedelta(days=14)
    retrain_every: Duration = timedelta(days=1)
    margin_quantile: float = Field(default=0.95, ge=0, le=1, allow_inf_nan=False)
    """Chosen on the first half of WorldCup98 (5-minute start-up): the cheapest quantile that
    kept the violations at u = 0.8 inside a 0.1 % budget (benchmarks/predictive_sweep.py)."""
    min_history: Duration = timedelta(days=1)
    max_error_pct: float = Field(default=200, gt=0, allow_inf_nan=False)
    """A recent sMAPE above this falls back to the target rule. 200, the default, never does
    (a mean sMAPE cannot exceed 200): at a few requests a minute noise alone keeps a good
    forecast's sMAPE over 50 %, and such a fall-back switched the forecast off just when
    traffic came back (NASA's trace). A forecast worse than naive falls back anyway."""
    worst_case_window: Duration = timedelta(days=1)
    """The forecast's worst case is the forecast raised by the largest share of the load
    missed over this window; used by metrics that set a `limit`."""

    def horizon_for(self, tick: timedelta) -> timedelta:
        return self.horizon if self.horizon is not None else self.startup + tick


class Balance(_Strict):
    """When a per-task metric's load is uneven enough, for long enough, to say so."""

    max_cv: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    """The coefficient of variation of the tasks' loads above which the load is uneven."""
    for_: Duration = Field(default=timedelta(minutes=5), alias="for")


MAX_WINDOWS = 50
"""The most entries a policy's `schedule` may list."""
MAX_METRICS = 20
"""The most entries a policy's `metrics` may list: a policy reads a few signals, and each
is a query a tick, so a file of thousands would slow every service's tick."""
WINDOW_NAME_MAX = 60
_EARLIEST, _LATEST = datetime(2000, 1, 1), datetime(9998, 12, 31, 23, 59, 59)


def _cron(expression: str) -> str:
    problem = cron_problem(expression)
    if problem is not None:
        raise ValueError(problem)
    return " ".join(expression.split())


def _time_zone(name: str) -> str:
    problem = time_zone_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


def _window_name(name: str) -> str:
    """A name for messages: one line of 1 to `WINDOW_NAME_MAX` characters."""
    if not 1 <= len(name) <= WINDOW_NAME_MAX or any(unicodedata.category(c) == "Cc"
                                                     for c in name):
        raise ValueError(f"must be 1 to {WINDOW_NAME_MAX} characters, none a control "
                         f"character, got {_shown(name)}")
    return name


def _moment(value: object) -> datetime:
    """A date and time as a policy writes it: `2026-12-24T08:00` (YAML reads it as text),
    `2026-12-24 08:00:00` (a timestamp), `2026-12-24` (midnight), with or without a UTC
    offset. Without one, it is a time on the window's clock (`timezone`)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"must be a date and time such as 2026-12-24T08:00, got "
                             f"{_shown(value)}") from None
    else:
        raise ValueError(f"must be a date and time such as 2026-12-24T08:00, got "
                         f"{_shown(value)}")
    if not _EARLIEST <= moment.replace(tzinfo=None) <= _LATEST:
        raise ValueError(f"must be between the years {_EARLIEST.year} and {_LATEST.year}, got "
                         f"{_shown(value)}")
    return moment


def _windows(value: object) -> object:
    """A list longer than `MAX_WINDOWS` is refused before its entries are read."""
    if isinstance(value, list) and len(value) > MAX_WINDOWS:
        raise ValueError(f"must list at most {MAX_WINDOWS} windows, got {len(value)}")
    return value


def _metric_list(value: object) -> object:
    """A list longer than `MAX_METRICS` is refused before its entries are read."""
    if isinstance(value, list) and len(value) > MAX_METRICS:
        raise ValueError(f"must list at most {MAX_METRICS} metrics, got {len(value)}")
    return value


Moment = Annotated[datetime, BeforeValidator(_moment)]


MAX_REPLICAS = 1_000_000
"""The most replicas a policy may name: far above any Swarm service, and a number Swarm can
store (a mistyped bound would otherwise fail only when applied)."""


class ScheduleWindow(_Strict):
    """A planned window (`autoscaler.core.schedule`): a cron expression with a duration,
    or a start and an end, on the clock of `timezone`. While it lasts, its `min_replicas`
    raises the floor and its `max_replicas` is the ceiling (above or below the policy's).
    """

    name: Annotated[str, AfterValidator(_window_name)] | None = None
    cron: Annotated[str, AfterValidator(_cron)] | None = None
    duration: Duration | None = None
    start: Moment | None = None
    end: Moment | None = None
    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"
    min_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    max_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)


class Policy(_Strict):
    """A validated policy for one Swarm service."""

    service: Annotated[str, AfterValidator(_service_name)]
    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(ge=0, le=MAX_REPLICAS)
    strategy: Strategy = "target"
    tolerance: float = Field(default=0.1, allow_inf_nan=False)
    step: int = 1
    metrics: Annotated[list[MetricSpec], BeforeValidator(_metric_list)] = Field(min_length=1)
    behavior: Behavior = Behavior()
    predictive: PredictiveSpec = PredictiveSpec()
    on_missing_metrics: Annotated[Literal["hold"], BeforeValidator(_hold_only)] = "hold"
    balance: Balance = Balance()
    schedule: Annotated[list[ScheduleWindow], BeforeValidator(_windows)] = Field(
        default_factory=list)
    """Planned windows that set the bounds while they last."""


def _default(model: type[BaseModel], key: str) -> Any:
    """The model's default for `key`: the raw checks read a key the file leaves out from
    here, so that every default is written once, in the models."""
    return model.model_fields[key].default


def _cross_key_problems(document: dict[Any, Any]) -> list[tuple[str, str]]:
    """Checks that span keys, on the raw document so that they join the type errors.

    A value of the wrong type is left to the field checks and skipped here.
    """
    problems: list[tuple[str, str]] = []
    low = document.get("min_replicas", _default(Policy, "min_replicas"))
    high = document.get("max_replicas")
    if _is_number(low) and _is_number(high) and low > high:
        problems.append(("min_replicas", f"min_replicas ({_shown(low)}) is greater than "
                         f"max_replicas ({_shown(high)})"))
    strategy = document.get("strategy", _default(Policy, "strategy"))
    tolerance = document.get("tolerance", _default(Policy, "tolerance"))
    step = document.get("step", _default(Policy, "step"))
    if strategy in ("target", "predictive") and _is_finite(tolerance) and tolerance < 0:
        problems.append(("tolerance", f"must be at least 0, got {_shown(tolerance)}"))
    if strategy == "threshold" and _is_number(step) and step < 1:
        problems.append(("step", f"must be at least 1, got {_shown(step)}"))
    if strategy == "predictive" and isinstance(document.get("predictive"), dict):
        problems.extend(_predictive_problems(document["predictive"]))
    metrics = document.get("metrics")
    seen: set[str] = set()
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS:
        metrics = []
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue
        where = f"metrics[{index}]"
        name = metric.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((f"{where}.name", f"metric name {name!r} is used twice"))
            seen.add(name)
        problems.extend(_strategy_problems(strategy, metric, where))
    problems.extend(_schedule_problems(document.get("schedule"), low, high))
    return problems


def _schedule_problems(schedule: object, low: object, high: object) -> list[tuple[str, str]]:
    """Each window is a cron expression with a duration, or a start and an end; it sets a
    bound; it ends after it starts, before its next start; and the bounds in force while it
    lasts keep min at most max. `low` and `high` are the policy's bounds as written."""
    if not isinstance(schedule, list) or len(schedule) > MAX_WINDOWS:
        return []
    problems: list[tuple[str, str]] = []
    names: set[str] = set()
    for index, window in enumerate(schedule):
        if not isinstance(window, dict):
            continue
        where = f"schedule[{index}]"
        given = {key for key, value in window.items() if value is not None}
        name = window.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append((f"{where}.name", f"window name {_shown(name)} is used twice"))
            names.add(name)
        if "cron" in given and given & {"start", "end"}:
            problems.append((where, "either cron and duration (a window that repeats) or start "
                             "and end (one window), not both"))
        elif "cron" in given:
            if "duration" not in given:
                problems.append((f"{where}.duration", "required with cron: how long each "
                                 "window lasts"))
        elif given & {"start", "end"}:
            for key, other in (("start", "end"), ("end", "start")):
                if key not in given:
                    problems.append((f"{where}.{key}", f"required with {other}"))
            if "duration" in given:
                problems.append((f"{where}.duration", "only with cron: a window with a start "
                                 "lasts until its end"))
        else:
            problems.append((where, "needs either cron and duration (a window that repeats) "
                             "or start and end (one window)"))
        if not given & {"min_replicas", "max_replicas"}:
            problems.append((where, "sets neither min_replicas nor max_replicas: it would "
                             "change nothing"))
        problems.extend(_window_time_problems(window, where))
        problems.extend(_window_bound_problems(window, where, low, high))
    return problems


def _window_time_problems(window: dict[Any, Any], where: str) -> list[tuple[str, str]]:
    """A duration above 0 and at most the interval between two starts; an end after the
    start. A value of the wrong type is the field checks' to report."""
    problems: list[tuple[str, str]] = []
    try:
        duration = _duration(window["duration"]) if window.get("duration") is not None \
            else None
    except ValueError:
        duration = None
    cron = window.get("cron")
    if duration is not None and duration <= timedelta(0):
        problems.append((f"{where}.duration", "must be more than 0s"))
    elif duration is not None and isinstance(cron, str) and cron_problem(cron) is None:
        gap = cron_gap(cron)
        if gap is not None and duration > gap:
            problems.append((f"{where}.duration", f"({format_duration(duration)}) must not "
                             f"exceed the time between two starts of {_shown(cron)} "
                             f"({format_duration(gap)}): a window ends before the next begins"))
    clock = window.get("timezone", _default(ScheduleWindow, "timezone"))
    place = zone(clock) if isinstance(clock, str) and time_zone_problem(clock) is None else None
    try:
        start, end = _moment(window.get("start")), _moment(window.get("end"))
    except ValueError:
        return problems
    if place is not None and to_utc(end, place) <= to_utc(start, place):
        problems.append((f"{where}.end", f"({_written(end)}) must be after start "
                         f"({_written(start)})"))
    return problems


def _written(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="minutes")


def _window_bound_problems(
    window: dict[Any, Any], where: str, low: object, high: object
) -> list[tuple[str, str]]:
    """The bounds in force during the window, min at most max: its min (a floor it raises
    only) and the policy's, below its max (or the policy's)."""
    own_low, own_high = window.get("min_replicas"), window.get("max_replicas")
    if any(bound is not None and not _is_number(bound) for bound in (own_low, own_high)):
        return []
    problems = []
    ceiling = own_high if own_high is not None else high
    if own_low is not None and _is_number(ceiling) and own_low > ceiling:
        whose = "the window's" if own_high is not None else "the policy's, as the window sets none"
        problems.append((f"{where}.min_replicas", f"({_shown(own_low)}) is greater than the "
                         f"max_replicas in force during the window ({_shown(ceiling)}, {whose})"))
    if own_high is not None and _is_number(low) and low > own_high:
        problems.append((f"{where}.max_replicas", f"({_shown(own_high)}) is below min_replicas "
                         f"({_shown(low)}), which holds during the window: a window raises the "
                         "floor, never lowers it"))
    return problems


def _predictive_problems(block: dict[Any, Any]) -> list[tuple[str, str]]:
    problems = []
    durations: dict[str, timedelta] = {}
    for key in ("history", "min_history", "retrain_every", "startup", "horizon",
                "worst_case_window"):
        try:
            duration = _duration(block[key]) if key in block else _default(PredictiveSpec, key)
        except ValueError:
            continue  # the field check reports it
        if duration is not None:
            durations[key] = duration
    for key in ("retrain_every", "worst_case_window"):
        if key in durations and durations[key] < timedelta(minutes=1):
            problems.append((f"predictive.{key}", "must be at least 1m"))
    if {"history", "min_history"} <= durations.keys() \
            and durations["min_history"] > durations["history"]:
        problems.append(("predictive.min_history",
                         f"({format_duration(durations['min_history'])}) must not exceed "
                         f"predictive.history ({format_duration(durations['history'])}), or "
                         "the forecast never runs"))
    if {"worst_case_window", "history"} <= durations.keys() \
            and durations["worst_case_window"] > durations["history"]:
        problems.append(("predictive.worst_case_window",
                         f"({format_duration(durations['worst_case_window'])}) must not exceed "
                         f"predictive.history ({format_duration(durations['history'])})"))
    ahead = "horizon" if "horizon" in durations else "startup"
    if {ahead, "history"} <= durations.keys() and durations[ahead] >= durations["history"]:
        problems.append((f"predictive.{ahead}",
                         f"({format_duration(durations[ahead])}) must be shorter than "
                         f"predictive.history ({format_duration(durations['history'])}), or the "
                         "forecast never trains: it learns the changes over the horizon from "
                         "the history"))
    if {"horizon", "startup"} <= durations.keys() and durations["horizon"] < durations["startup"]:
        problems.append(("predictive.horizon",
                         f"({format_duration(durations['horizon'])}) must be at least "
                         f"predictive.startup ({format_duration(durations['startup'])}): a "
                         "forecast nearer than that comes too late for the replicas it asks for"))
    return problems


def _strategy_problems(
    strategy: object, metric: dict[Any, Any], where: str
) -> list[tuple[str, str]]:
    if strategy in ("target", "predictive"):
        needed: tuple[str, ...] = ("target",)
    elif strategy == "threshold":
        needed = ("scale_up_above", "scale_down_below")
    else:
        return []
    problems = [
        (f"{where}.{key}", f"required by strategy {strategy!r}")
        for key in needed
        if metric.get(key) is None
    ]
    target, limit = metric.get("target"), metric.get("limit")
    if strategy in ("target", "predictive") and _is_finite(target) and target <= 0:
        problems.append((f"{where}.target", f"must be greater than 0, got {target!r}"))
    if strategy == "predictive" and _is_finite(limit) and _is_finite(target) and target > 0 \
            and limit < target:
        problems.append((f"{where}.limit", f"must be at least the target ({target:g}), got "
                         f"{limit:g}: it is the edge of the SLO, the target sits below it"))
    up, down = metric.get("scale_up_above"), metric.get("scale_down_below")
    if strategy == "threshold" and _is_finite(up) and _is_finite(down) and down >= up:
        problems.append(
            (f"{where}.scale_down_below", f"must be below scale_up_above ({up:g}), got {down:g}")
        )
    return problems


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: object) -> TypeGuard[int | float]:
    """A number a float field accepts: NaN, the infinities and whole numbers too large for
    a float are the field checks' to report."""
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


Document = dict[str, Any]

MAX_NESTING = 20
"""The deepest a policy file may nest its values (`behavior.scale_up.period` is 4 levels):
nested junk would otherwise exhaust the recursion of the YAML composer."""


@dataclass(frozen=True, eq=False)
class _ComplexKey:
    """A list or mapping written as a key (`? [a, b]`), which a dict cannot hold: it stands
    in for it, equal only to itself, so that validation reports it."""

    kind: str
    line: int

    def __str__(self) -> str:
        return f"{self.kind} (line {self.line})"


class _PolicyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML keeps the last),
    nesting deeper than `MAX_NESTING`, and scalars Python cannot hold (a 5,000-digit
    number, 30 February) with their line; a list or mapping as a key becomes a `_ComplexKey`.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_NESTING:
            mark = self.current_event.start_mark if self.check_event() else None
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_NESTING} levels deep (a policy needs 4)", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as error:
            # PyYAML's constructors fail on a malformed scalar with whatever they meet:
            # `!!timestamp x` an AttributeError, `!!bool x` a KeyError, 2020-02-30 a ValueError
            kind = str(node.tag).rsplit(":", 1)[-1]
            reason = str(error).split(";")[0]  # not Python's advice on raising its limits
            why = f": {reason}" if isinstance(error, ValueError | OverflowError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_shown(node.value)} as {kind}{why}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # `!!set [a]` reaches here with a list
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in mapping
            except TypeError:
                kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
                key, twice = _ComplexKey(kind, key_node.start_mark.line + 1), False
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {_shown(key)} appears twice in one mapping",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


_YAML_HINTS = (
    ("'\\t'", "YAML indents with spaces, never tabs: replace the tab with spaces"),
    ("another document", "a policy file holds one document: remove the second '---' and "
                         "what follows, or put it in a file of its own"),
)
"""How to fix what PyYAML's words for it leave unsaid, by a fragment of them."""


def parse_document(data: bytes, file: str) -> Document | list[PolicyProblem]:
    """A file's bytes as a YAML mapping, or what keeps them from being one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return [PolicyProblem(file, "", f"is not UTF-8 text (byte {error.start})")]
    try:
        document = yaml.load(text, Loader=_PolicyLoader)
    except yaml.reader.ReaderError as error:
        # A character YAML refuses (NUL, a control character): PyYAML's own words for it
        # end in a second line with a character offset in "<unicode string>"
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        return [PolicyProblem(file, "", f"is not valid YAML at line {line}, column {column}: "
                                        f"unacceptable character #x{error.character:04x}: "
                                        f"{error.reason}")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        hint = next((f" ({hint})" for found, hint in _YAML_HINTS if found in problem), "")
        return [PolicyProblem(file, "", f"is not valid YAML{where}: {problem}{hint}")]
    if document is None:
        return [PolicyProblem(file, "", "is empty: a policy needs at least service, "
                              "max_replicas and metrics")]
    if not isinstance(document, dict):
        return [PolicyProblem(
            file, "", f"must be a mapping of keys to values, got {_type_name(document)}"
        )]
    return document


def _text_keys_only(
    value: Any, model: type[BaseModel], path: str, problems: list[tuple[str, str]]
) -> Any:
    """`value` with every key that is not text left out of the mappings `model` reads, each
    reported at the mapping's key path (pydantic would name a number key as a list index)."""
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            shown = str(key) if isinstance(key, _ComplexKey) else _shown(key)
            problems.append((path, f"a key must be text, got {shown}"))
            continue
        field = model.model_fields.get(key)
        nested = _nested_model(field.annotation) if field else None
        where = f"{path}.{key}" if path else key
        if nested is not None and isinstance(item, list):
            item = [_text_keys_only(element, nested, f"{where}[{index}]", problems)
                    for index, element in enumerate(item)]
        elif nested is not None:
            item = _text_keys_only(item, nested, where, problems)
        kept[key] = item
    return kept


def validate_document(document: Document, file: str) -> Policy | list[PolicyProblem]:
    """A mapping as a Policy, or every problem found in it."""
    found: list[tuple[str, str]] = []
    document = _text_keys_only(document, Policy, "", found)
    try:
        policy = Policy.model_validate(document)
    except ValidationError as error:
        found.extend((_key_path(tuple(d["loc"])), _message(d, tuple(d["loc"])))
                     for d in error.errors())
    found.extend(_cross_key_problems(document))
    places: dict[int, dict[object, int]] = {}
    found.sort(key=lambda problem: _in_file_order(problem[0], document, places))
    return [PolicyProblem(file, key, message) for key, message in found] or policy


def _in_file_order(key: str, document: Document, places: dict[int, dict[object, int]]
                   ) -> list[int]:
    """Where a problem's key is in the file, step by step down its path (a key's place in
    its mapping, an index in its list: `schedule[2]` before `schedule[10]`), so that each
    check's problems do not come in the order the checks ran. A key not in the file (a
    required one left out) comes after its mapping's keys; a problem of no key, first.
    `places` keeps each mapping's key places (by the mapping's id) between calls: a file of
    many unknown keys has as many problems, and finding each key's place anew took time
    quadratic in them."""
    place: list[int] = []
    here: object = document
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", key):
        if index:
            place.append(int(index))
            here = here[int(index)] if isinstance(here, list) and int(index) < len(here) \
                else None
        elif isinstance(here, dict):
            keys = places.get(id(here))
            if keys is None:
                keys = places[id(here)] = {k: i for i, k in enumerate(here)}
            place.append(keys.get(name, len(keys)))
            here = here.get(name)
        else:
            place.append(0)
            here = None
    return place


def parse_policy(data: bytes, file: str) -> Policy | list[PolicyProblem]:
    """Turn a file's bytes into a Policy, or into every problem found in it."""
    document = parse_document(data, file)
    return document if isinstance(document, list) else validate_document(document, file)


TEMPLATE_CHECK_SERVICE = "template"


def parse_template(data: bytes, file: str) -> Document | list[PolicyProblem]:
    """A template: a policy without `service`, checked as a policy for a stand-in service."""
    document = parse_document(data, file)
    if isinstance(document, list):
        return document
    if "service" in document:
        return [PolicyProblem(file, "service", "a template names no service: the label "
                              "autoscaler.enable=true on a service applies it")]
    checked = validate_document({**document, "service": TEMPLATE_CHECK_SERVICE}, file)
    return checked if isinstance(checked, list) else document


def _message(detail: ErrorDetails, location: tuple[int | str, ...]) -> str:
    kind = detail["type"]
    value = detail.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(location)
    if kind in ("int_type", "int_from_float"):
        return f"must be a whole number, got {_shown(value)}{_text_not_number(value)}"
    if kind in ("float_type", "finite_number"):
        return f"must be a finite number, got {_shown(value)}{_text_not_number(value)}"
    if kind == "string_type":
        return f"must be text, got {_shown(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys to values, got {_shown(value)}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, got {_shown(value)}"
    if kind == "literal_error":
        expected = (detail.get("ctx") or {}).get("expected", "")
        return f"must be one of {expected}, got {_shown(value)}"
    if kind == "value_error":
        return str((detail.get("ctx") or {}).get("error", detail["msg"]))
    if kind == "greater_than_equal":
        return f"must be at least {(detail.get('ctx') or {}).get('ge')}, got {_shown(value)}"
    if kind == "less_than_equal":
        return f"must be at most {(detail.get('ctx') or {}).get('le'):,}, got {_shown(value)}"
    if kind == "greater_than":
        return f"must be greater than {(detail.get('ctx') or {}).get('gt')}, got {_shown(value)}"
    if kind == "datetime_type":
        return f"must be a date and time such as 2026-12-24T08:00, got {_shown(value)}"
    if kind == "too_short" and location and location[-1] == "metrics":
        return "must list at least one metric"
    return f"{detail['msg'][:1].lower()}{detail['msg'][1:]}, got {_shown(value)}"


def _did_you_mean(location: tuple[int | str, ...]) -> str:
    model = _model_at(location[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(location[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(location: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Policy
    for part in location:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        nested = _nested_model(annotation)
        if nested is None:
            return None
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None


def _key_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _type_name(value: object) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number",
            bool: "true/false"}.get(type(value), type(value).__name__)


def _text_not_number(value: object) -> str:
    """Why a number was read as text, where YAML's rules are the surprise."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    if "e" in value.lower():
        return (" (read as text: YAML takes an exponent for a number only with a dot and a "
                "sign, as 1.0e+3, unquoted; or write the number in full)")
    return " (quoted, so read as text: leave the quotes out)"


def _shown(value: object) -> str:
    """A value as the policy file would write it."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
