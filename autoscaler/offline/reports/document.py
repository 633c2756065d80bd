"""Reports a person reads: a small document model, written as Markdown (charts as SVG files
beside it) and as one self-contained HTML file (charts inline)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass(frozen=True)
class Chart:
    name: str
    """File name stem, unique in the report."""
    svg: str
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Chart] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: list[str]
    sections: list[Section]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value)


def _markdown_table(table: Table) -> str:
    def row(cells: Sequence[object]) -> str:
        return "| " + " | ".join(_cell(c).replace("|", "\\|") for c in cells) + " |"
    lines = [row(table.header), "|" + "---|" * len(table.header)]
    lines.extend(row(r) for r in table.rows)
    return "\n".join(lines)


def to_markdown(document: Document, out: Path) -> str:
    """The Markdown text; writes each chart to `out/<name>.svg`, which the text links."""
    parts = [f"# {document.title}", *document.intro]
    for section in document.sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_markdown_table(block))
            elif isinstance(block, Chart):
                (out / f"{block.name}.svg").write_text(block.svg)
                parts.append(f"![{block.caption}]({block.name}.svg)")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
svg { max-width: 100%; height: auto; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in a paragraph, as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def to_html(document: Document) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
             f"{html.escape(document.title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(document.title)}</h1>"]
    parts.extend(f"<p>{_inline(p)}</p>" for p in document.intro)
    for section in document.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
                    for row in block.rows
                )
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            elif isinstance(block, Chart):
                parts.append(f"<figure>{block.svg}<figcaption>{html.escape(block.caption)}"
                             "</figcaption></figure>")
            else:
                parts.append(f"<p>{_inline(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(document: Document, summary: dict[str, Any], out: Path) -> list[Path]:
    """Write `summary.json`, `report.md` (and its charts) and `report.html` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "report.md", out / "report.html"]
    written[0].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    written[1].write_text(to_markdown(document, out))
    written[2].write_text(to_html(document))
    return written
