"""docs/backtest.md quotes the demo's verdict and figures: they must be the README's demo
block, which tests/integration/test_readme_demo.py ties to what the demo prints, or the docs
drift from the code when a change moves the demo's figures."""

from __future__ import annotations

import re
from pathlib import Path

from tests.readme import readme_demo_block

ROOT = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    return " ".join(text.split())


def verdict_section() -> str:
    text = (ROOT / "docs" / "backtest.md").read_text(encoding="utf-8")
    return text.split("\n### The verdict\n", 1)[1].split("\n### ", 1)[0]


def test_the_verdicts_quoted_lines_are_the_demos() -> None:
    quotes = re.findall(r"`((?:target|threshold|predictive)\.yaml \(\w+\)[^`]*)`",
                        verdict_section())

    assert len(quotes) >= 3
    block = flat(readme_demo_block())
    for quote in quotes:
        assert flat(quote) in block


def test_the_thrash_warnings_example_is_the_demos_scaling_actions() -> None:
    row = next(line for line in readme_demo_block().splitlines()
               if line.startswith("scaling actions / hour"))
    threshold, target, predictive = (value.rstrip("*") for value in row.split()[-3:])

    assert (f"(the demo's predictive policy: {predictive} an hour against {threshold} and "
            f"{target})") in flat(verdict_section())
