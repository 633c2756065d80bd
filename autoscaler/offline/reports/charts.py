"""Charts for the reports, as SVG text: readable offline, inline in HTML, linked from Markdown."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from autoscaler.core.durations import format_duration

# Titles and labels carry names from logs and files (a service, a metric, a policy file):
# shown as written, never parsed as TeX, where a `$` pair would raise on an unknown symbol.
matplotlib.rcParams["text.parse_math"] = False

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


# -- demand and supply in replicas -----------------------------------------------------------

POINTS = 700
"""A supply chart draws at most about this many points across its width (a point a pixel or
so at the width the report shows it): a longer series is aggregated into buckets."""

_NICE_BUCKETS = tuple(timedelta(minutes=m) for m in (
    1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720, 1440, 2880, 10080))

SHORT_COLOUR = "#d62728"
LOAD_COLOUR = "#7f7f7f"
READY_COLOUR = "#2ca02c"
BILLED_COLOUR = "#1f77b4"


def bucket_steps(steps: int, step: timedelta, points: int = POINTS) -> int:
    """Steps a bucket: 1 when `steps` fit in `points`, else the shortest round duration
    (5m, 10m, 30m, 1h, ...) a whole number of steps long that brings them under it."""
    if steps <= points:
        return 1
    needed = -(-steps // points)
    for duration in _NICE_BUCKETS:
        size, rest = divmod(duration, step)
        if not rest and size >= needed:
            return size
    return needed


@dataclass(frozen=True)
class SupplySeries:
    """One policy's steps: the load in replicas (load / (capacity x SLO utilisation)), the
    ready and the billed replicas, and whether each step was under-provisioned."""

    times: Sequence[datetime]
    load: Sequence[float]
    ready: Sequence[int]
    billed: Sequence[int]
    short: Sequence[bool]


def _buckets(values: Sequence[float], size: int) -> list[Sequence[float]]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """[first, last] index pairs of the runs of True."""
    found, start = [], None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            found.append((start, index - 1))
            start = None
    return found


def supply_chart(
    title: str, series: SupplySeries, step: timedelta, *, top: float,
    marks: Sequence[tuple[datetime, str]] = (), height: float = 3.4,
) -> tuple[str, str]:
    """An SVG chart on one replica axis from 0 to `top` (which the charts a report compares
    share): the load in replicas, the ready and the billed replicas at every step; a series
    longer than POINTS aggregated into buckets of a round duration, each drawn as a band from
    its lowest to its highest value and a line at its mean (the load and the ready replicas;
    the billed ones, which differ only while replicas start, left out). Under-provisioned
    steps are red: shaded and flagged under the axis, so that a single step shows (when
    aggregated: a strip of their buckets under the chart); `marks` are
    labelled vertical lines (labels stacked, so that close ones stay readable). Returns the
    SVG and a sentence that says how points were aggregated, for the caption."""
    size = bucket_steps(len(series.times), step)
    times = [*series.times[::size], series.times[-1] + step]
    xs = mdates.date2num(times)
    if size == 1:
        figure, axis = plt.subplots(figsize=(10, height))
        strip = None
    else:
        figure, (axis, strip) = plt.subplots(
            2, 1, figsize=(10, height + 0.35), sharex=True,
            gridspec_kw={"height_ratios": [height, 0.35], "hspace": 0.08})
    handles: list[Any] = []
    if size == 1:
        load = [*series.load, series.load[-1]]
        (h,) = axis.step(xs, load, where="post", color=LOAD_COLOUR, linewidth=1.0,
                         label="load in replicas")
        handles.append(h)
        (h,) = axis.step(xs, [*series.billed, series.billed[-1]], where="post",
                         color=BILLED_COLOUR, linewidth=1.1, linestyle="--",
                         label="billed replicas (ready + starting)")
        handles.append(h)
        (h,) = axis.step(xs, [*series.ready, series.ready[-1]], where="post",
                         color=READY_COLOUR, linewidth=1.6, label="ready replicas")
        handles.append(h)
    else:
        for values, colour, line_colour, name in (
                (series.load, LOAD_COLOUR, "#404040", "load in replicas"),
                ([float(r) for r in series.ready], READY_COLOUR, READY_COLOUR,
                 "ready replicas")):
            buckets = _buckets(values, size)
            low, high = [min(b) for b in buckets], [max(b) for b in buckets]
            mean = [sum(b) / len(b) for b in buckets]
            band = axis.fill_between(xs, [*low, low[-1]], [*high, high[-1]], step="post",
                                     color=colour, alpha=0.3, linewidth=0,
                                     label=f"{name}: lowest to highest")
            (h,) = axis.step(xs, [*mean, mean[-1]], where="post", color=line_colour,
                             linewidth=1.0 if name == "ready replicas" else 0.8,
                             label=f"{name}: mean")
            handles.extend([band, h])
    short_buckets = [any(series.short[i:i + size]) for i in range(0, len(series.short), size)]
    runs = _runs(short_buckets)
    if strip is not None:
        for first, last in runs:
            strip.axvspan(xs[first], xs[last + 1], color=SHORT_COLOUR, linewidth=0)
        strip.set_yticks([])
        strip.set_ylabel("short", fontsize=8, rotation=0, ha="right", va="center")
        strip.grid(alpha=0.3, axis="x")
        handles.append(Patch(color=SHORT_COLOUR,
                             label="under-provisioned (ready < oracle demand)"))
    elif runs:
        for first, last in runs:
            axis.axvspan(xs[first], xs[last + 1], color=SHORT_COLOUR, alpha=0.22, linewidth=0)
        centres = [(xs[first] + xs[last + 1]) / 2 for first, last in runs]
        (h,) = axis.plot(centres, [0] * len(centres), linestyle="none", marker="^",
                         markersize=7, color=SHORT_COLOUR, clip_on=False, zorder=5,
                         label="under-provisioned (ready < oracle demand)")
        handles.append(h)
    for number, (at, label) in enumerate(marks):
        x = mdates.date2num(at)
        axis.axvline(x, color="#555555", linewidth=0.9, linestyle=":")
        right = (x - xs[0]) > 0.75 * (xs[-1] - xs[0])
        axis.annotate(label, (x, top), xytext=(-4 if right else 4, -12 - 12 * number),
                      textcoords="offset points", fontsize=8, color="#222222",
                      ha="right" if right else "left",
                      bbox={"boxstyle": "square,pad=0.15", "facecolor": "white",
                            "edgecolor": "none", "alpha": 0.85})
    axis.set_xlim(xs[0], xs[-1])
    axis.set_ylim(0, top)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("replicas")
    axis.set_title(title, fontsize=11, loc="left")
    bottom = strip if strip is not None else axis
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axis.grid(alpha=0.3)
    bottom.legend(handles=handles, loc="upper center",
                  bbox_to_anchor=(0.5, -0.13 * height / (0.35 if strip is not None else height)),
                  ncol=3 if len(handles) > 4 else len(handles), fontsize=8, frameon=False)
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):], _aggregation_note(len(series.times), size, step)


def _aggregation_note(steps: int, size: int, step: timedelta) -> str:
    if size == 1:
        return (f"Every step drawn ({steps:,} steps of {format_duration(step)}), none "
                "aggregated; under-provisioned steps shaded red and flagged under the axis.")
    points = -(-steps // size)
    return (f"Aggregated to fit the width: {steps:,} steps of {format_duration(step)} drawn as "
            f"{points:,} points of {format_duration(step * size)} ({size} steps) each; for "
            "the load in replicas and for the ready replicas, a band from the point's lowest "
            "to its highest step and a line at their mean; a point is red in the strip under "
            "the chart when any of its steps was under-provisioned. "
            "The billed replicas (ready or starting) differ "
            "from the ready ones only while replicas start: the worst-hour chart draws them.")

