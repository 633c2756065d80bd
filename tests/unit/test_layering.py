"""The core imports no adapter library, and imports point down the layers, never up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "autoscaler"
IO_LIBRARIES = {"docker", "requests", "prometheus_api_client", "apscheduler", "urllib3",
                "prometheus_client", "structlog", "socket", "wsgiref", "subprocess"}
CORE = ["core", "engine.py"]
SHELL = {"cli", "bootstrap", "runtime", "adapters", "offline"}


def modules(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", modules(*CORE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_imports_no_io_library_and_nothing_of_the_shell(path: Path) -> None:
    names = imported(path)
    roots = {name.split(".")[0] for name in names}
    assert not roots & IO_LIBRARIES
    shell = {n for n in names if n.startswith("autoscaler.") and n.split(".")[1] in SHELL}
    assert not shell
