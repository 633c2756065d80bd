"""The policy file contract: YAML text in, a validated `Policy` or every problem out.

Pure: `parse_policy` takes the bytes of a file and returns values; reading files and
checking across files is done by `autoscaler.policy_files`.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from datetime import timedelta
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
    query: str = Field(min_length=1)
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
    margin_quantile: float = Field(default=0.75, ge=0, le=1, allow_inf_nan=False)
    min_history: Duration = timedelta(days=1)
    max_error_pct: float = Field(default=50, gt=0, allow_inf_nan=False)
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


class Policy(_Strict):
    """A validated policy for one Swarm service."""

    service: Annotated[str, AfterValidator(_service_name)]
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=0)
    strategy: Strategy = "target"
    tolerance: float = Field(default=0.1, allow_inf_nan=False)
    step: int = 1
    metrics: list[MetricSpec] = Field(min_length=1)
    behavior: Behavior = Behavior()
    predictive: PredictiveSpec = PredictiveSpec()
    on_missing_metrics: Annotated[Literal["hold"], BeforeValidator(_hold_only)] = "hold"
    balance: Balance = Balance()


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
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        if not isinstance(metric, dict):
            continue
        where = f"metrics[{index}]"
        name = metric.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((f"{where}.name", f"metric name {name!r} is used twice"))
            seen.add(name)
        problems.extend(_strategy_problems(strategy, metric, where))
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


def parse_document(data: bytes, file: str) -> Document | list[PolicyProblem]:
    """A file's bytes as a YAML mapping, or what keeps them from being one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return [PolicyProblem(file, "", f"is not UTF-8 text (byte {error.start})")]
    try:
        document = yaml.load(text, Loader=_PolicyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        return [PolicyProblem(file, "", f"is not valid YAML{where}: {problem}")]
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
    return [PolicyProblem(file, key, message) for key, message in found] or policy


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
        return f"must be a whole number, got {_shown(value)}"
    if kind in ("float_type", "finite_number"):
        return f"must be a finite number, got {_shown(value)}"
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
    if kind == "greater_than":
        return f"must be greater than {(detail.get('ctx') or {}).get('gt')}, got {_shown(value)}"
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


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
