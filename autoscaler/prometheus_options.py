"""The command-line options and AUTOSCALER_* variables that say how to reach Prometheus:
authentication, TLS and extra headers, shared by every command that reads Prometheus.
Secrets come from files or environment variables, never from an option's own text."""

from __future__ import annotations

import argparse
import os

from autoscaler.adapters.prometheus_access import PrometheusAccess

OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("prometheus_basic_user", "--prometheus-basic-user", "USER",
     "user for basic authentication"),
    ("prometheus_basic_password_file", "--prometheus-basic-password-file", "FILE",
     "file holding the basic-auth password (a Swarm secret: /run/secrets/NAME)"),
    ("prometheus_basic_password_env", "--prometheus-basic-password-env", "VARIABLE",
     "environment variable holding the basic-auth password"),
    ("prometheus_bearer_token_file", "--prometheus-bearer-token-file", "FILE",
     "file holding a bearer token"),
    ("prometheus_bearer_token_env", "--prometheus-bearer-token-env", "VARIABLE",
     "environment variable holding a bearer token"),
    ("prometheus_ca_file", "--prometheus-ca-file", "FILE",
     "CA bundle that signed Prometheus's certificate"),
    ("prometheus_cert_file", "--prometheus-cert-file", "FILE",
     "client certificate (PEM) for Prometheus"),
    ("prometheus_key_file", "--prometheus-key-file", "FILE",
     "the client certificate's key, if not in the certificate's file"),
)
"""(destination, flag, metavar, help); each flag's variable is AUTOSCALER_ + its
destination in capitals."""
HEADERS_VARIABLE = "AUTOSCALER_PROMETHEUS_HEADERS"
HEADER_FILES_VARIABLE = "AUTOSCALER_PROMETHEUS_HEADER_FILES"


def variable(destination: str) -> str:
    return f"AUTOSCALER_{destination.upper()}"


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "reaching Prometheus", "Authentication, TLS and headers; each flag also reads its "
        "AUTOSCALER_* variable. Credentials never appear in a log line or an error.")
    for destination, flag, metavar, text in OPTIONS:
        group.add_argument(flag, dest=destination, metavar=metavar,
                           help=f"{text} (env {variable(destination)})")
    group.add_argument(
        "--prometheus-header", dest="prometheus_headers", action="append", metavar="NAME=VALUE",
        help=f"an extra request header, such as a tenant's; repeat for more (env "
        f"{HEADERS_VARIABLE}, one NAME=VALUE a line)")
    group.add_argument(
        "--prometheus-header-file", dest="prometheus_header_files", action="append",
        metavar="NAME=FILE", help=f"an extra request header whose value is in a file; repeat "
        f"for more (env {HEADER_FILES_VARIABLE}, one NAME=FILE a line)")


def access(url: str, arguments: argparse.Namespace, *, environment: bool) -> PrometheusAccess:
    """The access the options (and, with `environment`, their variables) describe; ValueError
    naming the option, file or variable at fault, never a secret."""
    given = {}
    for destination, *_ in OPTIONS:
        value = getattr(arguments, destination, None)
        if value is None and environment:
            value = os.environ.get(variable(destination)) or None
        given[destination] = value
    headers = _lines(arguments.prometheus_headers, HEADERS_VARIABLE, environment=environment)
    header_files = _lines(arguments.prometheus_header_files, HEADER_FILES_VARIABLE,
                          environment=environment)
    return PrometheusAccess.from_options(
        url,
        basic_user=given["prometheus_basic_user"],
        basic_password_file=given["prometheus_basic_password_file"],
        basic_password_env=given["prometheus_basic_password_env"],
        bearer_token_file=given["prometheus_bearer_token_file"],
        bearer_token_env=given["prometheus_bearer_token_env"],
        ca_bundle=given["prometheus_ca_file"], client_cert=given["prometheus_cert_file"],
        client_key=given["prometheus_key_file"],
        headers=_pairs(headers, "--prometheus-header"),
        header_files=_pairs(header_files, "--prometheus-header-file"),
    )


def _lines(given: list[str] | None, variable_name: str, *, environment: bool) -> list[str]:
    """The repeated option's values, else (with `environment`) the variable's lines."""
    if given:
        return list(given)
    if environment and os.environ.get(variable_name):
        return [line for line in os.environ[variable_name].splitlines() if line.strip()]
    return []


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{flag} must be NAME=VALUE, got a value without a name")
        pairs[name.strip()] = value
    return pairs
