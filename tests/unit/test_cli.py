"""The command line: validate's report, exit codes, options and their variables."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from autoscaler.cli import main, parse_arguments

VALID = "service: web\nmax_replicas: 5\nmetrics: [{name: rps, query: q, target: 10}]\n"


def test_validate_reports_every_problem_of_every_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(VALID)
    (tmp_path / "typo.yaml").write_text(VALID.replace("web", "api").replace(
        "max_replicas", "max_replica"))
    (tmp_path / "twice.yml").write_text(VALID)
    (tmp_path / "bytes.yaml").write_bytes(b"service: \xff\n")
    (tmp_path / "notes.txt").write_text("not a policy")

    code = main(["validate", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 2
    assert f"{tmp_path / 'typo.yaml'}: max_replica: unknown key (did you mean 'max_replicas'?)" \
        in out
    assert f"{tmp_path / 'typo.yaml'}: max_replicas: required key is missing" in out
    assert f"{tmp_path / 'bytes.yaml'}: is not UTF-8 text" in out
    assert f"{tmp_path / 'twice.yml'}: service: service 'web' already has a policy" in out
    assert "notes.txt" not in out
    assert "Traceback" not in out
    assert out.rstrip().endswith("4 problems in 3 files\n(alternatives for one service, to "
                                 "compare in backtest or tune: validate --alternatives)")


def test_validate_alternatives_takes_policies_for_one_service_and_without_a_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """What backtest and tune take: two policies for `web`, one without a query; a broken
    one is still reported."""
    (tmp_path / "target.yaml").write_text(VALID)
    (tmp_path / "cheaper.yaml").write_text(VALID.replace("target: 10", "target: 20"))
    (tmp_path / "no-query.yaml").write_text(VALID.replace("query: q, ", ""))

    assert main(["validate", "--alternatives", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'no-query.yaml'}: metric rps has no query" in out
    assert sum(line.startswith("ok ") for line in out.splitlines()) == 3
    assert main(["validate", str(tmp_path)]) == 2
    assert "validate --alternatives" in capsys.readouterr().out

    (tmp_path / "typo.yaml").write_text(VALID.replace("max_replicas", "max_replica"))
    assert main(["validate", "--alternatives", str(tmp_path)]) == 2
    assert "max_replica: unknown key" in capsys.readouterr().out


def test_validate_defaults_to_the_policies_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "web.yaml").write_text(VALID)
    monkeypatch.setenv("AUTOSCALER_POLICIES", str(tmp_path))

    assert main(["validate"]) == 0
    assert "ok " in capsys.readouterr().out
    assert main(["validate", "--policies", str(tmp_path / "elsewhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().out


def test_validate_says_ok_of_each_label_template_and_whom_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of templates alone used to validate in silence, as if it held nothing."""
    template = VALID.replace("service: web\n", "")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.yaml").write_text(template)
    (tmp_path / "templates" / "web.yaml").write_text(template)

    assert main(["validate", str(tmp_path)]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"ok {tmp_path / 'templates' / 'default.yaml'}: template 'default', for services "
        "labelled autoscaler.enable=true with autoscaler.policy=default or no "
        "autoscaler.policy label",
        f"ok {tmp_path / 'templates' / 'web.yaml'}: template 'web', for services labelled "
        "autoscaler.enable=true with autoscaler.policy=web",
    ]


@pytest.mark.parametrize("command", ["run", "dry-run"])
def test_the_agent_does_not_start_on_a_policies_folder_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
) -> None:
    missing = tmp_path / "polices"

    assert main([command, "--once", "--policies", str(missing)]) == 2
    assert f"the policies folder {missing} does not exist" in capsys.readouterr().err


def test_validate_an_empty_folder_and_a_folder_named_like_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "x.yaml").mkdir()

    assert main(["validate", str(tmp_path / "empty"), str(tmp_path / "policies")]) == 2

    out = capsys.readouterr().out
    assert "empty: folder holds no policy file" in out
    assert "x.yaml: is not a readable file" in out


PASSED_OVER = ("the agent passes this file over: it reads only the files named *.yaml or "
               "*.yml (in lower case, not hidden) of its policies folder")


@pytest.mark.parametrize(
    ("files", "argument", "noted"),
    [
        pytest.param(["web.json"], "web.json", ["web.json"], id="a-json-file-named-alone"),
        pytest.param([".web.yaml"], ".web.yaml", [".web.yaml"], id="a-hidden-file-named-alone"),
        pytest.param(["web.YAML"], "web.YAML", ["web.YAML"], id="upper-case-named-alone"),
        pytest.param(["api.yaml", "web.YML"], ".", ["web.YML"], id="upper-case-in-the-folder"),
        pytest.param(["api.yaml", "templates/web.Yaml"], ".", ["templates/web.Yaml"],
                     id="upper-case-in-the-templates-folder"),
        pytest.param(["api.yaml", "web.yml", "notes.txt", ".#api.yaml"], ".", [],
                     id="what-the-agent-reads-or-is-no-policy"),
        pytest.param(["web.yaml"], "web.yaml", [], id="a-policy-named-alone"),
    ],
)
def test_validate_notes_a_file_the_agent_would_pass_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    files: list[str], argument: str, noted: list[str],
) -> None:
    """`validate web.json` said ok, and the agent then never read the file: a newcomer's
    policy that validates and never scales anything, without a word."""
    (tmp_path / "templates").mkdir()
    for index, name in enumerate(files):
        (tmp_path / name).write_text(VALID.replace("web", f"s{index}"))
    monkeypatch.chdir(tmp_path)

    main(["validate", argument])

    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("note: ")] == [
        f"note: {Path(argument, name) if argument == '.' else Path(name)}: {PASSED_OVER}"
        for name in noted]


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        pytest.param("AUTOSCALER_PROMETHEUS_URL", "http://p:9", "prometheus_url", "http://p:9",
                     id="url"),
        pytest.param("AUTOSCALER_INTERVAL", "1m", "interval", 60.0, id="interval"),
        pytest.param("AUTOSCALER_PORT", "0", "port", 0, id="port"),
        pytest.param("AUTOSCALER_LOG_FORMAT", "console", "log_format", "console", id="log"),
        pytest.param("AUTOSCALER_POLICIES", "/etc/p", "policies", Path("/etc/p"), id="policies"),
    ],
)
def test_options_fall_back_to_their_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    parsed = getattr(parse_arguments(["run"]), attribute)

    assert (parsed.total_seconds() if attribute == "interval" else parsed) == expected


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_INTERVAL", "1m")

    assert parse_arguments(["run", "--interval", "5s"]).interval.total_seconds() == 5


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["run", "--interval", "0s"], id="zero-interval"),
        pytest.param(["dry-run", "--interval", "10ms"], id="interval-under-a-second"),
        pytest.param(["run", "--port", "70000"], id="port-out-of-range"),
        pytest.param(["run", "--apply-workers", "0"], id="no-apply-worker"),
        pytest.param(["run", "--apply-workers", "99"], id="too-many-apply-workers"),
        pytest.param(["dry-run", "--log-format", "xml"], id="unknown-format"),
        pytest.param(["run", "--interval", "1e20"], id="interval-overflow"),
        pytest.param(["scale"], id="unknown-command"),
        pytest.param([], id="no-command"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["backtest", "tune", "report", "demo"])
def test_an_out_folder_that_cannot_be_one_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
) -> None:
    a_file = tmp_path / "report.html"
    a_file.write_text("")
    given = {"backtest": ["--trace", "t.csv", "--policy", "p.yaml"],
             "tune": ["--trace", "t.csv", "--policy", "p.yaml"],
             "report": ["--log", "d.log"], "demo": []}[command]

    for out, says in ((a_file, "is a file, not a folder"),
                      (a_file / "inside", "cannot make the folder")):
        with pytest.raises(SystemExit) as exit_info:
            main([command, *given, "--out", str(out)])
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"),
    [pytest.param("AUTOSCALER_LOG_FORMAT", "xml", id="log-format"),
     pytest.param("AUTOSCALER_PORT", "abc", id="port"),
     pytest.param("AUTOSCALER_INTERVAL", "soon", id="interval")],
)
def test_a_bad_variable_is_a_usage_error_that_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["run"])

    assert exit_info.value.code == 2
    assert f"environment variable {variable}={value!r}" in capsys.readouterr().err


def test_version_names_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"autoscaler {metadata.version('swarm-autoscaler')}"


@pytest.mark.parametrize("command", ["validate", "run", "dry-run", "backtest", "report", "demo",
                                     "tune"])
def test_every_commands_help_says_its_exit_codes(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])

    assert exited.value.code == 0
    assert re.search(r"Exit (codes: )?0 ", " ".join(capsys.readouterr().out.split()))


@pytest.mark.parametrize("command", [
    pytest.param(["run"], id="run"),
    pytest.param(["dry-run"], id="dry-run"),
    pytest.param(["run", "--once"], id="run-once"),
])
def test_a_sighup_while_the_agent_starts_does_not_end_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str],
) -> None:
    """Until the agent sets its own handler, SIGHUP's default action would end the process:
    a reload asked for while it starts (imports, the Docker client) stopped it."""
    import signal

    import autoscaler.runtime.commands

    seen: list[object] = []
    monkeypatch.setattr(autoscaler.runtime.commands, "run",
                        lambda settings: seen.append(signal.getsignal(signal.SIGHUP)) or 0)
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert main([*command, "--policies", str(tmp_path)]) == 0
    finally:
        signal.signal(signal.SIGHUP, before)
    assert seen == [signal.SIG_IGN]


def test_ctrl_c_stops_an_offline_command_with_a_line_not_a_traceback(tmp_path: Path) -> None:
    """The demo replays three weeks for several seconds: SIGINT once it has said what it
    replays, as Ctrl-C in a terminal would, stops it with exit 130 and one line on stderr.
    The signal waits for that line, not for a time: on a loaded machine the imports alone
    can take longer than any fixed wait."""
    command = [sys.executable, "-u", "-m", "autoscaler", "demo", "--out", str(tmp_path / "demo")]
    # A job a shell started in the background ignores SIGINT, and its children inherit that
    # (Python then raises no KeyboardInterrupt): the demo gets the terminal's default.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
                          ) as process:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=60), "the demo said nothing in 60 s"
        first = process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        out = first + out

    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert err.strip().endswith("autoscaler: interrupted")


def test_validate_prints_a_keys_control_characters_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A key that spells a line break and a terminal's escape sequence cannot forge an `ok`
    line nor hide the count of problems."""
    forged = "zz\nok fine.yaml: service web, strategy target, 1..5 replicas\x1b[8m"
    spelt = forged.encode("unicode_escape").decode()
    (tmp_path / "evil.yaml").write_text(VALID + f'"{spelt}": 1\n')

    assert main(["validate", str(tmp_path)]) == 2

    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "1 problem in 1 file"
    assert not any(line.startswith("ok ") for line in lines)
    assert "zz\\nok fine.yaml" in lines[0] and "\\x1b[8m" in lines[0]
