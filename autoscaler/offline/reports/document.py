"""Reports a person reads: a small document model, written as Markdown (charts as SVG files
beside it) and as one self-contained HTML file (charts inline)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    marked: frozenset[tuple[int, int]] = frozenset()
    """Cells (row index in `rows`, column index) to emphasise: bold in Markdown and HTML."""
    notes: Sequence[str] = ()
    """One line of prose per row (what the row means), shown as a last column headed
    `notes_header`; none when empty."""
    notes_header: str = "what it means"


@dataclass(frozen=True)
class Chart:
    name: str
    """File name stem, unique in the report."""
    svg: str
    caption: str


@dataclass(frozen=True)
class Callout:
    """A boxed block that a reader sees first: a lead paragraph, then the points that
    qualify it, then warnings (each a line)."""
    lead: str
    points: Sequence[str] = ()
    warnings: Sequence[str] = ()
    title: str = ""


Block = str | Table | Chart | Callout
"""A paragraph (Markdown's `code` and **bold**), a table, a chart or a callout."""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: list[str]
    sections: list[Section]
    lead: list[Block] = field(default_factory=list)
    """Blocks shown right under the title, before the intro (a verdict)."""


ROUNDED_TO_ZERO = 0.0005
"""Below this, three decimals would show a value that is not 0 as 0."""


def cell_text(value: object) -> str:
    """A cell as the reports show it: a float with thousands separators and at most three
    decimals, or three significant digits where three decimals would show a value as 0."""
    if isinstance(value, float) and value and abs(value) < ROUNDED_TO_ZERO:
        return format(Decimal(f"{value:.3g}"), "f")
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value)


def _with_notes(table: Table) -> tuple[list[object], list[list[object]]]:
    """The header and rows, with the notes as a last column when the table has them."""
    if not table.notes:
        return list(table.header), [list(row) for row in table.rows]
    notes = [*table.notes, *[""] * (len(table.rows) - len(table.notes))]
    return ([*table.header, table.notes_header],
            [[*row, note] for row, note in zip(table.rows, notes, strict=False)])


def _markdown_line(text: str) -> str:
    """Text that may hold some from outside (a service name, a decision's message or reason,
    an event's name) on one line of Markdown: no HTML a viewer would run, no line break
    (a carriage return is one too) that would end a table's row, a heading or a
    paragraph. HTML escapes all of it (`_inline`), so none is meant as HTML."""
    return " ".join(text.replace("&", "&amp;").replace("<", "&lt;").splitlines())


def _markdown_table(table: Table) -> str:
    def cell(value: object, marked: bool) -> str:
        text = _markdown_line(cell_text(value)).replace("|", "\\|")
        return f"**{text}**" if marked and text else text

    def row(cells: Sequence[object], index: int | None = None) -> str:
        return "| " + " | ".join(cell(c, (index, column) in table.marked)
                                 for column, c in enumerate(cells)) + " |"
    header, rows = _with_notes(table)
    lines = [row(header), "|" + "---|" * len(header)]
    lines.extend(row(r, index) for index, r in enumerate(rows))
    return "\n".join(lines)


def _markdown_callout(callout: Callout) -> str:
    lead, title = _markdown_line(callout.lead), _markdown_line(callout.title)
    lines = [f"> **{title}** {lead}" if title else f"> {lead}"]
    if callout.points:
        lines.append(">")
        lines.extend(f"> - {_markdown_line(point)}" for point in callout.points)
    if callout.warnings:
        lines.append(">")
        lines.extend(f"> - **Warning:** {_markdown_line(warning)}"
                     for warning in callout.warnings)
    return "\n".join(lines)


def _markdown_block(block: Block, out: Path) -> str:
    if isinstance(block, Table):
        return _markdown_table(block)
    if isinstance(block, Chart):
        (out / f"{block.name}.svg").write_text(block.svg)
        caption = _markdown_line(block.caption)
        alt = caption.replace("]", "\\]")
        return f"![{alt}]({block.name}.svg)\n\n*{caption}*"
    if isinstance(block, Callout):
        return _markdown_callout(block)
    return _markdown_line(block)


def to_markdown(document: Document, out: Path) -> str:
    """The Markdown text; writes each chart to `out/<name>.svg`, which the text links."""
    parts = [f"# {_markdown_line(document.title)}"]
    parts.extend(_markdown_block(block, out) for block in document.lead)
    parts.extend(map(_markdown_line, document.intro))
    for section in document.sections:
        parts.append(f"## {_markdown_line(section.title)}")
        parts.extend(_markdown_block(block, out) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th.num, td.num { text-align: right; }
td:first-child { white-space: nowrap; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
svg { max-width: 100%; height: auto; }
figure > svg { width: 100%; }
code { background: #f5f5f5; padding: 0 0.2em; }
td.note, th.note { text-align: left; color: #555; font-size: 0.92em; max-width: 34em; }
td.marked { font-weight: bold; background: #eef6ee; }
.callout { border: 2px solid #3a7d44; background: #f4faf4; border-radius: 6px;
           padding: 0.6em 1.1em; margin: 1em 0 1.5em; }
.callout h2 { margin: 0.2em 0 0.4em; font-size: 1.25em; }
.callout p { margin: 0.3em 0; font-size: 1.05em; }
.callout ul { margin: 0.4em 0; padding-left: 1.3em; }
.callout li.warning { color: #8a4b00; }
"""


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in a paragraph, as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _numeric_columns(rows: Sequence[Sequence[object]]) -> set[int]:
    """The columns after the first whose cells are numbers or empty, some not empty: they
    are right-aligned."""
    def number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def empty(value: object) -> bool:
        return value is None or value == ""
    width = max((len(row) for row in rows), default=0)
    columns = [[row[column] for row in rows if column < len(row)] for column in range(width)]
    return {column for column in range(1, width)
            if all(number(v) or empty(v) for v in columns[column])
            and any(number(v) for v in columns[column])}


def _html_table(table: Table) -> str:
    header, rows = _with_notes(table)
    notes = len(header) - 1 if table.notes else None
    numeric = _numeric_columns(rows)

    def cell(tag: str, value: object, row: int | None, column: int) -> str:
        classes = (["note"] if column == notes else []) + (
            ["num"] if column in numeric else []) + (
            ["marked"] if (row, column) in table.marked else [])
        attribute = f" class='{' '.join(classes)}'" if classes else ""
        return f"<{tag}{attribute}>{html.escape(cell_text(value))}</{tag}>"
    head = "".join(cell("th", h, None, column) for column, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", c, index, column) for column, c in enumerate(row))
                   + "</tr>" for index, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _html_callout(callout: Callout) -> str:
    parts = ["<section class='callout'>"]
    if callout.title:
        parts.append(f"<h2>{html.escape(callout.title)}</h2>")
    parts.append(f"<p>{_inline(callout.lead)}</p>")
    items = [f"<li>{_inline(point)}</li>" for point in callout.points] + [
        f"<li class='warning'><b>Warning:</b> {_inline(warning)}</li>"
        for warning in callout.warnings]
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Chart):
        return (f"<figure>{block.svg}<figcaption>{html.escape(block.caption)}"
                "</figcaption></figure>")
    if isinstance(block, Callout):
        return _html_callout(block)
    return f"<p>{_inline(block)}</p>"


def to_html(document: Document) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
             f"{html.escape(document.title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(document.title)}</h1>"]
    parts.extend(_html_block(block) for block in document.lead)
    parts.extend(f"<p>{_inline(p)}</p>" for p in document.intro)
    for section in document.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(_html_block(block) for block in section.blocks)
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
