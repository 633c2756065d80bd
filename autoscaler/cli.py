"""Commands and exit codes: 0 done, 1 a --once tick could reach neither Prometheus nor Docker,
2 bad input (usage or an invalid policy)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from autoscaler import prometheus_options
from autoscaler.adapters.decision_log import LOG_HOLDS
from autoscaler.adapters.prometheus_access import PrometheusAccess
from autoscaler.console import reader_may_leave
from autoscaler.core.durations import format_duration, parse_duration
from autoscaler.exit_codes import EXIT_INTERRUPTED
from autoscaler.offline.traces import FILLS, CsvOptions, parse_time
from autoscaler.runtime.logs import LOG_FORMATS
from autoscaler.runtime.settings import ENVIRONMENT, Settings


def _env_help(setting: str, text: str) -> str:
    variable, default = ENVIRONMENT[setting]
    return f"{text} (env {variable}; default {default})"


MIN_INTERVAL = timedelta(seconds=1)
"""The shortest tick: each tick's deadlines for Prometheus and Docker are shares of it."""


def _interval(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"must be at least {format_duration(MIN_INTERVAL)}, got {text!r}")
    return value


def _out_folder(text: str) -> Path:
    """A folder to write into, made now if missing: a path that cannot be one is refused
    before any work, not after a replay."""
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot make the folder {text}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into the folder {text}")
    return folder


def _log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return text


def _log_holds(text: str) -> str:
    if text not in LOG_HOLDS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_HOLDS)}, got {text!r}")
    return text


def _policies(text: str) -> Path:
    return Path(text)


def _text(text: str) -> str:
    return text


def _whole_number(text: str, low: int, high: int, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {number}")
    return number


def _workers(text: str) -> int:
    return _whole_number(text, 1, 64, "a whole number")


def _port(text: str) -> int:
    return _whole_number(text, 0, 65535, "a port number")


CONVERTERS: dict[str, Callable[[str], object]] = {
    "policies": _policies, "prometheus_url": _text, "interval": _interval, "port": _port,
    "listen": _text, "apply_workers": _workers,
    "log_format": _log_format, "log_holds": _log_holds, "lease": _text,
}
"""Setting -> the conversion of its text, shared by the flag and its variable."""


def _fill_from_environment(parser: argparse.ArgumentParser, arguments: argparse.Namespace
                           ) -> None:
    """Each setting not given as a flag comes from its variable, else its default."""
    for setting, convert in CONVERTERS.items():
        if getattr(arguments, setting, "absent") is not None:
            continue
        variable, default = ENVIRONMENT[setting]
        text = os.environ.get(variable, default)
        try:
            setattr(arguments, setting, convert(text))
        except argparse.ArgumentTypeError as error:
            parser.error(f"environment variable {variable}={text!r}: {error}")


def _add_policies_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policies", type=_policies, metavar="DIR",
        help=_env_help("policies", "folder of policy files, one *.yaml or *.yml per service"),
    )


def _version() -> str:
    try:
        return metadata.version("swarm-autoscaler")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoscaler",
        description="Autoscaling agent for Docker Swarm: reads metrics from Prometheus, "
        "decides per service by the policy files, scales the services, and logs every "
        "decision as one JSON line.",
        epilog="Exit codes: 0 done; 1 a --once tick got no answer from Prometheus (every query "
        "failed) or from Docker; 2 bad input (usage, an invalid policy for validate, backtest "
        "and tune, or a port already in use for run); 130 an offline command or validate "
        "stopped by Ctrl-C. "
        "Run 'autoscaler COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check policy files and report every problem",
        description="Check policy files and report every problem of every file at once. "
        "Exit 0 when all are valid, 2 otherwise.",
    )
    validate.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH",
        help="policy files or folders (default: the --policies folder)",
    )
    validate.add_argument(
        "--alternatives", action="store_true",
        help="check them as policies to compare in backtest and tune: several may name one "
        "service, and a metric may leave out its query (the trace feeds it); the agent "
        "itself takes one policy a service, each metric with its query",
    )
    _add_policies_option(validate)

    for name, text in (
        ("run", "scale the services by their policies, every interval"),
        ("dry-run", "decide and log as 'run' does, but never change a service"),
    ):
        command = commands.add_parser(
            name, help=text,
            description=f"{text[0].upper()}{text[1:]}. The Docker engine is the one DOCKER_HOST "
            "names (default: the local socket). Each tick logs one scaling_decision JSON line "
            "per policy; edits of the policy files are taken up at the next tick or on SIGHUP.",
            epilog="Exit codes: 0 done (SIGTERM or SIGINT stop it, waiting up to 3 s for the "
            "tick in flight); "
            "1 a --once tick got no answer from Prometheus or Docker; 2 bad input (usage, an "
            "unreadable credential, or the port for /healthz, /readyz and /metrics already in "
            "use; an invalid policy is logged and left out, the valid ones are run).",
        )
        _add_policies_option(command)
        command.add_argument(
            "--prometheus-url", metavar="URL",
            help=_env_help("prometheus_url", "base URL of Prometheus"),
        )
        command.add_argument(
            "--interval", type=_interval, metavar="DURATION",
            help=_env_help("interval", "time between ticks, such as 15s or 1m (at least 1s)"),
        )
        command.add_argument(
            "--port", type=_port,
            help=_env_help("port", "port serving /healthz, /readyz and /metrics; 0 turns "
                           "them off"),
        )
        command.add_argument(
            "--apply-workers", type=_workers, metavar="N",
            help=_env_help("apply_workers", "scale calls a tick makes side by side"),
        )
        command.add_argument(
            "--listen", metavar="HOST",
            help=_env_help("listen", "address serving /healthz, /readyz and /metrics, such "
                           "as 127.0.0.1"),
        )
        command.add_argument(
            "--log-format", type=_log_format, metavar="{auto,json,console}",
            help=_env_help("log_format", "auto is JSON unless stdout is a terminal"),
        )
        command.add_argument(
            "--log-holds", type=_log_holds, metavar="{all,changes}",
            help=_env_help("log_holds", "which holds (WithinTolerance, ScaleUpStabilized, "
                           "ScaleDownStabilized, MetricsMissing with the count unchanged) get "
                           "a scaling_decision line: all, or only changes, when a service's "
                           "reason or desired count differs from its previous decision; every "
                           "tick also logs one tick_summary line"),
        )
        command.add_argument(
            "--lease", metavar="LABEL",
            help=_env_help("lease", "node label holding the lease: of the agents sharing it, "
                           "only the holder scales (dry-run takes none)"),
        )
        prometheus_options.add_options(command)
        command.add_argument(
            "--once", action="store_true", help="run one tick, then exit (0, or 1 when "
            "every Prometheus query failed or Docker could not be listed)",
        )
    _add_offline_commands(commands)
    for command_parser in commands.choices.values():
        # A command's errors print its own usage line, not the top level's.
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _positive_number(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def duration_argument(text: str) -> timedelta:
    """A duration option's value (`parse_duration`), or argparse's usage error."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_offline_commands(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest", help="replay a trace through policies and score them",
        description="Replay history through the agent's engine and the given policies, one "
        "tick per step, against a simulated cluster, and score each policy against the "
        "oracle (the fewest replicas meeting the SLO at each step). Writes summary.json, "
        "report.md and report.html into --out. The history is a CSV (--trace) or a "
        "Prometheus range (--prometheus-url, --query, --start, --end, --step).",
        epilog="Exit codes: 0 done; 1 Prometheus did not answer; 2 bad input (a policy, the "
        "trace, or a query Prometheus refuses as bad_data).",
    )
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, metavar="CSV",
                        help="a CSV with a timestamp column and a value column at a regular "
                        "step (as minute,requests; --fill or --resample for gaps)")
    source.add_argument("--prometheus-url", metavar="URL",
                        help="replay a live service's history from this Prometheus instead")
    prometheus_options.add_options(backtest)
    backtest.add_argument("--query", help="with --prometheus-url: a query answering one series")
    backtest.add_argument("--start", type=_time, help="with --prometheus-url: first time")
    backtest.add_argument("--end", type=_time, help="with --prometheus-url: last time")
    backtest.add_argument("--step", type=_interval, help="with --prometheus-url: step, e.g. 1m")
    backtest.add_argument("--policy", type=Path, action="append", required=True, metavar="FILE",
                          help="a policy file; repeat to compare several")
    backtest.add_argument("--out", type=_out_folder, required=True, metavar="DIR",
                          help="folder for summary.json, report.md, report.html")
    backtest.add_argument("--capacity", type=_positive_number,
                          help="what one replica carries at 100 %%, in the trace's unit "
                          "(default: the first target among the policies / 0.7)")
    backtest.add_argument("--startup", type=duration_argument, metavar="DURATION",
                          help="time until a new replica is ready, in whole steps of the "
                          "trace (default: the start-up the predictive policies set, else 1m)")
    backtest.add_argument("--slo-utilisation", type=_fraction, default=0.9, metavar="U",
                          help="share of capacity a replica may run at within the SLO "
                          "(default 0.9)")
    backtest.add_argument("--warmup", type=duration_argument, default=timedelta(days=8),
                          metavar="DURATION", help="history before the scored steps, never "
                          "scored (default 8d)")
    backtest.add_argument("--metric", metavar="NAME",
                          help="the policy metric the trace feeds (default: each policy's first)")
    backtest.add_argument("--fill", choices=FILLS,
                          help="with --trace: fill missing steps with 0, the value before, or "
                          "interpolated (default: a gap is an error)")
    backtest.add_argument("--resample", type=_interval, metavar="DURATION",
                          help="with --trace: put the rows on this step, e.g. 1m: each step the "
                          "mean of its rows, a step without one interpolated (or as --fill "
                          "says)")
    backtest.add_argument("--column", metavar="NAME",
                          help="with --trace: the header of the value column (default: one "
                          "named like value or requests, else the second)")
    backtest.add_argument("--steps-csv", type=_out_folder, metavar="DIR",
                          help="also write per policy a CSV of every scored step into DIR "
                          "(policy<N>-<name>.csv: time, load, demand, billed, ready, forecast, "
                          "reason)")
    _add_slo_budget(backtest)

    report = commands.add_parser(
        "report", help="turn a dry-run's decision log into a report",
        description="Turn the decision log of `autoscaler dry-run` (JSON lines as the agent "
        "writes them, or `docker service logs --raw`) into a report per service: metrics, "
        "current and desired replicas over time, the changes and their reasons.",
        epilog="Exit codes: 0 done (also when lines were skipped: it warns of them); 2 bad "
        "input (a log that cannot be read or holds no scaling_decision line, an --out that "
        "is not a folder or cannot be made).",
    )
    report.add_argument("--log", type=Path, required=True, metavar="FILE",
                        help="the decision log: JSON lines, gzip'd or not, - for standard "
                        "input; other events are passed over, lines that are not JSON events "
                        "skipped with a warning")
    report.add_argument("--out", type=_out_folder, required=True, metavar="DIR",
                        help="folder for summary.json, report.md, report.html")

    demo = commands.add_parser(
        "demo", help="backtest the example policies on a shipped real trace (no Docker needed)",
        description="Backtest the example policies shipped with the agent on three weeks of "
        "real traffic (the 1998 World Cup web site), print the comparison and write the "
        "report. Needs neither Docker nor Prometheus.",
        epilog="Exit codes: 0 done; 2 bad input (an --out that is not a folder or cannot be "
        "made, an --slo-budget that is not a percentage).",
    )
    demo.add_argument("--out", type=_out_folder, default=Path("autoscaler-demo"), metavar="DIR",
                      help="folder for the report (default ./autoscaler-demo)")
    _add_slo_budget(demo)
    _add_tune_command(commands)


def _add_slo_budget(parser: argparse.ArgumentParser) -> None:
    """backtest's and demo's --slo-budget: what the report's verdict allows."""
    parser.add_argument("--slo-budget", type=_budget, default=0.1, metavar="PCT",
                        help="the verdict names the cheapest policy with at most this %% of "
                        "the scored steps in SLO violation (default 0.1)")


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, got {text!r}")
    return value


def _grid(text: str) -> list[float]:
    from autoscaler.offline.tune import parse_grid

    try:
        return parse_grid(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _refine(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _default_jobs() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _add_tune_command(commands: Any) -> None:
    tune = commands.add_parser(
        "tune", help="find the cheapest target (or threshold bounds) within an SLO budget",
        description="Search each policy's setting that matters (the fed metric's target; for "
        "threshold, scale_up_above and scale_down_below in their given ratio) for the fewest "
        "replica-hours with at most --slo-budget % of the scored steps in SLO violation, by "
        "replaying history through the agent's engine as backtest does, once per candidate: "
        "the policy as given, a utilisation u = value / capacity on --grid, then steps of "
        "--refine around the best. Prints the frontier; writes into --out each recommended "
        "policy (only the tuned key changed, a comment saying what was measured), "
        "summary.json, report.md and report.html. The history is a CSV (--trace) or a "
        "Prometheus range (--prometheus-url, --query, --start, --end, --step).",
        epilog="Exit codes: 0 done (also when no candidate meets the budget: it says so and "
        "recommends nothing); 1 Prometheus did not answer; 2 bad input (a policy, the "
        "trace, or a query Prometheus refuses as bad_data).",
    )
    source = tune.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, metavar="CSV",
                        help="a CSV with a timestamp column and a value column at a regular "
                        "step (as minute,requests; --fill or --resample for gaps)")
    source.add_argument("--prometheus-url", metavar="URL",
                        help="tune on a live service's history from this Prometheus instead")
    prometheus_options.add_options(tune)
    tune.add_argument("--query", help="with --prometheus-url: a query answering one series")
    tune.add_argument("--start", type=_time, help="with --prometheus-url: first time")
    tune.add_argument("--end", type=_time, help="with --prometheus-url: last time")
    tune.add_argument("--step", type=_interval, help="with --prometheus-url: step, e.g. 1m")
    tune.add_argument("--fill", choices=FILLS,
                      help="with --trace: fill missing steps with 0, the value before, or "
                      "interpolated (default: a gap is an error)")
    tune.add_argument("--resample", type=_interval, metavar="DURATION",
                      help="with --trace: put the rows on this step, e.g. 1m")
    tune.add_argument("--column", metavar="NAME",
                      help="with --trace: the header of the value column")
    tune.add_argument("--policy", type=Path, action="append", required=True, metavar="FILE",
                      help="a policy file to tune; repeat to tune several")
    tune.add_argument("--out", type=_out_folder, required=True, metavar="DIR",
                      help="folder for the recommended policies, summary.json, report.md, "
                      "report.html")
    tune.add_argument("--slo-budget", type=_budget, default=0.1, metavar="PCT",
                      help="the most SLO violation allowed, in %% of scored steps (default "
                      "0.1)")
    tune.add_argument("--grid", type=_grid, default=None, metavar="START:STOP:STEP",
                      help="the utilisations (value / capacity) to try first: START:STOP:STEP "
                      "or a list as 0.3,0.5,0.7 (default 0.1:1.0:0.05)")
    tune.add_argument("--refine", type=_refine, default=0.01, metavar="STEP",
                      help="then try steps of this size around the best, up to its "
                      "neighbours on the grid; 0 does not (default 0.01)")
    tune.add_argument("--jobs", type=_workers, default=None, metavar="N",
                      help="replays run side by side (default: the CPUs, at most 8)")
    tune.add_argument("--capacity", type=_positive_number,
                      help="what one replica carries at 100 %%, in the trace's unit, the same "
                      "for every candidate (default: the first target among the policies / "
                      "0.7)")
    tune.add_argument("--startup", type=duration_argument, metavar="DURATION",
                      help="time until a new replica is ready (default: the start-up the "
                      "predictive policies set, else 1m)")
    tune.add_argument("--slo-utilisation", type=_fraction, default=0.9, metavar="U",
                      help="share of capacity a replica may run at within the SLO "
                      "(default 0.9)")
    tune.add_argument("--warmup", type=duration_argument, default=timedelta(days=8),
                      metavar="DURATION", help="history before the scored steps, never "
                      "scored (default 8d)")
    tune.add_argument("--metric", metavar="NAME",
                      help="the policy metric the trace feeds, whose setting is tuned "
                      "(default: each policy's first)")


def _tune(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from autoscaler.offline import tune_command
    from autoscaler.offline.tune import DEFAULT_GRID, parse_grid

    grid = arguments.grid or parse_grid(DEFAULT_GRID)
    inputs = tune_command.TuneInputs(
        policy_files=arguments.policy, out=arguments.out, budget=arguments.slo_budget,
        capacity=arguments.capacity, slo_utilisation=arguments.slo_utilisation,
        startup=arguments.startup, warmup=arguments.warmup, metric=arguments.metric,
        grid=grid, grid_text=", ".join(f"{u:g}" for u in grid) if arguments.grid
        else DEFAULT_GRID, refine=arguments.refine, jobs=arguments.jobs or _default_jobs(),
    )
    if arguments.trace is not None:
        _check_csv_history(parser, arguments)
        return tune_command.tune_csv(arguments.trace, inputs, CsvOptions(
            fill=arguments.fill, resample=arguments.resample, column=arguments.column))
    _check_prometheus_range(parser, arguments)
    return tune_command.tune_prometheus(
        _access(parser, arguments.prometheus_url, arguments), arguments.query, arguments.start,
        arguments.end, arguments.step, inputs,
    )


def _offline(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from autoscaler.offline import commands as offline

    if arguments.command == "demo":
        return offline.demo(arguments.out, arguments.slo_budget)
    if arguments.command == "report":
        return offline.report_from_log(arguments.log, arguments.out)
    if arguments.command == "tune":
        return _tune(arguments, parser)
    inputs = offline.BacktestInputs(
        policy_files=arguments.policy, out=arguments.out, capacity=arguments.capacity,
        slo_utilisation=arguments.slo_utilisation, startup=arguments.startup,
        warmup=arguments.warmup, metric=arguments.metric, steps_csv=arguments.steps_csv,
        slo_budget=arguments.slo_budget,
    )
    if arguments.trace is not None:
        _check_csv_history(parser, arguments)
        return offline.backtest_csv(arguments.trace, inputs, CsvOptions(
            fill=arguments.fill, resample=arguments.resample, column=arguments.column))
    _check_prometheus_range(parser, arguments)
    return offline.backtest_prometheus(
        _access(parser, arguments.prometheus_url, arguments), arguments.query, arguments.start,
        arguments.end, arguments.step, inputs,
    )


def _check_csv_history(parser: argparse.ArgumentParser, arguments: argparse.Namespace
                       ) -> None:
    """History from a CSV (backtest, tune): the Prometheus range's options are absent; exit
    2 otherwise, rather than replaying the whole file as if they held."""
    range_only = [f"--{n}" for n in ("query", "start", "end", "step")
                  if getattr(arguments, n) is not None]
    if range_only:
        verb = "applies" if len(range_only) == 1 else "apply"
        parser.error(f"{', '.join(range_only)} {verb} to --prometheus-url only; a --trace CSV "
                     "is replayed whole, at its own step (--resample changes it)")


def _check_prometheus_range(parser: argparse.ArgumentParser, arguments: argparse.Namespace
                            ) -> None:
    """History from Prometheus (backtest, tune): the range is complete and the CSV-only
    options are absent; exit 2 otherwise."""
    csv_only = [f"--{n}" for n in ("fill", "resample", "column")
                if getattr(arguments, n) is not None]
    if csv_only:
        verb = "applies" if len(csv_only) == 1 else "apply"
        parser.error(f"{', '.join(csv_only)} {verb} to a --trace CSV only; a Prometheus "
                     "range is already at --step")
    missing = [f"--{n}" for n in ("query", "start", "end", "step")
               if getattr(arguments, n) is None]
    if missing:
        parser.error(f"--prometheus-url needs {', '.join(missing)}")
    if arguments.end <= arguments.start:
        parser.error("--end must come after --start")


def _access(parser: argparse.ArgumentParser, url: str, arguments: argparse.Namespace
            ) -> PrometheusAccess:
    try:
        return prometheus_options.access(url, arguments, environment=True)
    except ValueError as error:
        parser.error(str(error))


def _run(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # SIGHUP asks the agent to reload its policies, which it reads at its start anyway: until
    # the agent sets its handler (a second or more into the start), the signal's default
    # action would end the process instead.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from autoscaler.runtime.commands import run

    return run(Settings(
        policies=arguments.policies,
        prometheus=_access(parser, arguments.prometheus_url, arguments),
        interval=arguments.interval,
        port=arguments.port,
        listen=arguments.listen,
        apply_workers=arguments.apply_workers,
        log_format=arguments.log_format,
        lease=arguments.lease,
        dry_run=arguments.command == "dry-run",
        once=arguments.once,
        log_holds=arguments.log_holds,
    ))


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags, else their AUTOSCALER_* variables, else the defaults; exit 2 on bad input."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command in OFFLINE_COMMANDS:
        return arguments
    _fill_from_environment(parser, arguments)
    return arguments


OFFLINE_COMMANDS = ("backtest", "report", "demo", "tune")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    parser = arguments.command_parser
    try:
        if arguments.command in OFFLINE_COMMANDS:
            with reader_may_leave():
                return _offline(arguments, parser)
        if arguments.command == "validate":
            from autoscaler.runtime.commands import validate

            with reader_may_leave():
                return validate(arguments.paths or [arguments.policies],
                                alternatives=arguments.alternatives)
    except KeyboardInterrupt:  # the agent handles SIGINT itself; these just stop, no trace
        print("autoscaler: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _run(arguments, parser)
