"""The stack files of compose/ as an operator deploys them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


@pytest.mark.parametrize(("file", "service"), [
    pytest.param("stack.yml", "agent", id="agent"),
    pytest.param("stack.socket-proxy.yml", "socket-proxy", id="socket-proxy"),
])
def test_a_service_that_logs_every_tick_has_its_log_rotated(file: str, service: str) -> None:
    """A line per service a tick, unrotated, fills the manager's disk."""
    stack = yaml.safe_load((COMPOSE / file).read_text())
    logging = stack["services"][service].get("logging", {})
    assert logging.get("driver") == "json-file"
    assert set(logging.get("options", {})) >= {"max-size", "max-file"}
