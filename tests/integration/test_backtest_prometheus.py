"""backtest --prometheus-url: a live service's history replayed from a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.conftest import LoadExporter, RunningPrometheus, free_port

POLICY = "service: web\nmax_replicas: 20\nmetrics: [{name: rps, query: q, target: 10}]\n"


def backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", "backtest", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_range_of_a_live_series_is_replayed(
    tmp_path: Path, prometheus: RunningPrometheus, load_exporter: LoadExporter
) -> None:
    service = f"range{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0)
    for value in (20, 60, 60, 20):
        load_exporter.gauge.labels(service).set(value)
        prometheus.wait_value(f'astest_load{{service="{service}"}}', value)
        time.sleep(3)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    (tmp_path / "p.yaml").write_text(POLICY)

    done = backtest(
        "--prometheus-url", prometheus.url, "--query", f'astest_load{{service="{service}"}}',
        "--start", start.isoformat(), "--end", end.isoformat(), "--step", "1s",
        "--warmup", "2s", "--startup", "1s", "--policy", str(tmp_path / "p.yaml"),
        "--out", str(tmp_path / "out"),
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    steps = int((end - start).total_seconds()) + 1
    assert summary["settings"]["scored_steps"] == steps - 2
    (record,) = summary["policies"]
    assert record["oracle_replica_hours"] > 0
    assert record["scaling_actions"] >= 1


def test_an_absent_prometheus_exits_1_a_multi_series_or_malformed_query_2(
    tmp_path: Path, prometheus: RunningPrometheus
) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    now = datetime.now(UTC).replace(microsecond=0)
    common = ["--start", (now - timedelta(seconds=30)).isoformat(), "--end", now.isoformat(),
              "--step", "1s", "--warmup", "2s", "--policy", str(tmp_path / "p.yaml"),
              "--out", str(tmp_path / "out")]

    absent = backtest("--prometheus-url", f"http://127.0.0.1:{free_port()}",
                      "--query", "vector(1)", *common)
    several = backtest("--prometheus-url", prometheus.url,
                       "--query", 'label_replace(vector(1), "a", "1", "", "") or vector(2)',
                       *common)

    malformed = backtest("--prometheus-url", prometheus.url, "--query", "sum(", *common)

    assert absent.returncode == 1 and "did not answer" in absent.stderr
    assert several.returncode == 2 and "one series" in several.stderr
    assert malformed.returncode == 2 and "refused the query" in malformed.stderr
    assert "bad_data" in malformed.stderr


def test_negative_and_infinite_samples_are_replaced_and_warned_of(
    tmp_path: Path, prometheus: RunningPrometheus
) -> None:
    """`time() % 4 - 1` is negative at every fourth second; `1 / (time() % 3)` is +Inf at
    every third: no load is either, and the backtest says how many steps it repaired."""
    (tmp_path / "p.yaml").write_text(POLICY)
    now = datetime.now(UTC).replace(microsecond=0)
    common = ["--start", (now - timedelta(seconds=40)).isoformat(), "--end", now.isoformat(),
              "--step", "1s", "--warmup", "2s", "--policy", str(tmp_path / "p.yaml")]

    negative = backtest("--prometheus-url", prometheus.url, "--query", "vector(time() % 4 - 1)",
                        *common, "--out", str(tmp_path / "negative"))
    infinite = backtest("--prometheus-url", prometheus.url,
                        "--query", "vector(1) / vector(time() % 3)",
                        *common, "--out", str(tmp_path / "infinite"))

    assert negative.returncode == 0, negative.stderr
    assert "steps of 41 had a negative value, which no load is" in negative.stderr
    assert infinite.returncode == 0, infinite.stderr
    assert "had no finite sample (none, NaN or an infinity)" in infinite.stderr
    summary = json.loads((tmp_path / "negative" / "summary.json").read_text())
    assert any("negative" in warning for warning in summary["settings"]["trace_warnings"])
