"""The agent's settings: each from a flag, else an AUTOSCALER_* variable, else a default."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from autoscaler.adapters.decision_log import LogHolds
from autoscaler.adapters.prometheus_access import PrometheusAccess
from autoscaler.runtime.logs import LogFormat


@dataclass(frozen=True)
class Settings:
    policies: Path
    """Folder (or file) of policy files."""
    prometheus: PrometheusAccess
    """How to reach the Prometheus HTTP API: its URL, credentials, TLS and headers."""
    interval: timedelta
    """Time between ticks."""
    port: int
    """Port for /healthz, /readyz and /metrics; 0 serves none."""
    listen: str
    """Address the endpoints listen on."""
    apply_workers: int
    """How many scale calls a tick makes side by side."""
    log_format: LogFormat
    lease: str
    """Node label that holds the lease; agents sharing it exclude each other."""
    dry_run: bool
    """Record decisions, apply none."""
    once: bool
    """Run one tick and exit."""
    log_holds: LogHolds = "all"
    """Which holds get a scaling_decision line: `all`, or only `changes` of reason or count."""


ENVIRONMENT = {
    "policies": ("AUTOSCALER_POLICIES", "policies"),
    "prometheus_url": ("AUTOSCALER_PROMETHEUS_URL", "http://localhost:9090"),
    "interval": ("AUTOSCALER_INTERVAL", "15s"),
    "port": ("AUTOSCALER_PORT", "9180"),
    "listen": ("AUTOSCALER_LISTEN", "0.0.0.0"),
    "apply_workers": ("AUTOSCALER_APPLY_WORKERS", "16"),
    "log_format": ("AUTOSCALER_LOG_FORMAT", "auto"),
    "log_holds": ("AUTOSCALER_LOG_HOLDS", "all"),
    "lease": ("AUTOSCALER_LEASE", "autoscaler.lease"),
}
"""Setting -> (environment variable, default as text)."""
