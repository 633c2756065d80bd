"""The README shows what `bash .ci/demo` prints: its verdict and table must be the demo's own,
or an operator comparing them would think the install broken (or the docs would quietly
drift from what the code does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.cli import main
from tests.readme import readme_demo_block


def test_the_readmes_verdict_and_table_are_what_the_demo_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["demo", "--out", str(tmp_path / "demo")])

    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(readme_demo_block())
