"""Charts for the reports, as SVG text: readable offline, inline in HTML, linked from Markdown."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

MAX_POINTS = 1500
"""A long series is reduced to about this many points, one per bucket of steps."""


@dataclass(frozen=True)
class Line:
    label: str
    values: Sequence[float | None]
    step: bool = True
    axis: str = "left"
    """"left" or "right"."""
    dashed: bool = False
    lowest: bool = False
    """A long series keeps each bucket's lowest value instead of its highest (for a supply,
    whose dips matter)."""


def _reduced(times: Sequence[datetime], values: Sequence[float | None], *, lowest: bool
             ) -> tuple[list[datetime], list[float | None]]:
    if len(times) <= MAX_POINTS:
        return list(times), list(values)
    size = -(-len(times) // MAX_POINTS)
    kept_times, kept = [], []
    for start in range(0, len(times), size):
        bucket = [v for v in values[start:start + size] if v is not None]
        kept_times.append(times[start])
        kept.append((min(bucket) if lowest else max(bucket)) if bucket else None)
    return kept_times, kept


def line_chart(
    title: str, times: Sequence[datetime], lines: Sequence[Line], *, left_label: str,
    right_label: str = "", height: float = 3.2,
) -> str:
    """An SVG chart of `lines` over `times` (long series are reduced to buckets)."""
    figure, left = plt.subplots(figsize=(10, height))
    right = left.twinx() if any(line.axis == "right" for line in lines) else None
    handles = []
    for line in lines:
        axis = right if line.axis == "right" and right is not None else left
        kept_times, ys = _reduced(times, line.values, lowest=line.lowest)
        xs = mdates.date2num(kept_times)
        plotted = [float("nan") if y is None else y for y in ys]
        if line.step:
            (handle,) = axis.step(xs, plotted, where="post", label=line.label,
                                  linewidth=1.0 if line.dashed else 1.4,
                                  linestyle="--" if line.dashed else "-")
        else:
            (handle,) = axis.plot(xs, plotted, label=line.label, linewidth=0.8, alpha=0.6,
                                  color="grey")
        handles.append(handle)
    left.set_title(title, fontsize=11, loc="left")
    left.set_ylabel(left_label)
    if right is not None:
        right.set_ylabel(right_label)
        right.set_ylim(bottom=0)
    left.set_ylim(bottom=0)
    locator = mdates.AutoDateLocator()
    left.xaxis.set_major_locator(locator)
    left.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    left.grid(alpha=0.3)
    left.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    figure.tight_layout()
    out = io.StringIO()
    figure.savefig(out, format="svg")
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]
