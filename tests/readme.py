"""The README's demo block, which the demo's output and the docs' quotes of it are held to."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_demo_block() -> str:
    """The README's code block that starts with the demo's verdict."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```\nVerdict:") + len("```\n")
    return text[start:text.index("```", start)]
