"""Small server-side SVG charts for the QA reports: no script, nothing to vendor, and they print.

Each chart is an `<svg role="img">` with a title and a description; the page puts the same figures in a table next
to it, which is the text alternative (screen readers, and anyone who wants the numbers). Labels are escaped here:
physician and department names are the clinic's data, not markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

ROW = 24  # px per bar
LABEL = 190  # px for the names left of the bars
BARS = 360  # px for the bars themselves
VALUE = 70  # px for the figure right of a bar


@dataclass(frozen=True)
class Bar:
    """One physician's sampled share against their floor (both shares of their consultations)."""

    label: str
    share: float | None  # None: no consultations, nothing to draw
    floor: float | None
    met: bool


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None  # None: no data that month (a gap in the line)


def _header(chart_id: str, title: str, description: str, width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="qa-chart" id="{escape(chart_id)}" role="img" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">'
            f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
            f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>')


def share_bars(bars: Sequence[Bar], *, chart_id: str, title: str, description: str,
               percent: Callable[[float], str]) -> Markup:
    """Horizontal bars of the sampled share, a tick at each one's floor; a bar below its floor is marked."""
    top = max([0.2, *(b.share or 0 for b in bars), *(b.floor or 0 for b in bars)])
    scale = BARS / (top * 1.1)
    width, height = LABEL + BARS + VALUE, max(len(bars), 1) * ROW + 8
    parts = [_header(chart_id, title, description, width, height)]
    for index, bar in enumerate(bars):
        y = 4 + index * ROW
        parts.append(f'<text class="qa-chart-label" x="{LABEL - 8}" y="{y + 16}" text-anchor="end">'
                     f'{escape(bar.label[:32])}</text>')
        if bar.share is None:
            parts.append(f'<text class="qa-chart-value" x="{LABEL + 4}" y="{y + 16}">—</text>')
            continue
        state = "met" if bar.met else "below"
        length = max(bar.share * scale, 1.0)
        parts.append(f'<rect class="qa-bar qa-bar-{state}" x="{LABEL}" y="{y + 4}" width="{length:.1f}" '
                     f'height="{ROW - 8}" rx="2"/>')
        if bar.floor is not None:
            x = LABEL + bar.floor * scale
            parts.append(f'<line class="qa-floor" x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" y2="{y + ROW - 1}"/>')
        parts.append(f'<text class="qa-chart-value" x="{LABEL + length + 6:.1f}" y="{y + 16}">'
                     f'{escape(percent(bar.share))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  # every piece of text in it was escaped above


def line(points: Sequence[Point], *, chart_id: str, title: str, description: str, maximum: float,
         fmt: Callable[[float], str], reference: float | None = None) -> Markup:
    """A monthly line from 0 to `maximum` (months without data leave a gap), with an optional dashed reference
    (the sampling rate)."""
    left, right, top, bottom, step = 44, 16, 12, 36, 56
    width = left + right + max(len(points) - 1, 1) * step
    height = 180
    plot = height - top - bottom
    maximum = maximum or 1.0

    def y_of(value: float) -> float:
        return top + plot * (1 - min(value, maximum) / maximum)

    parts = [_header(chart_id, title, description, width, height)]
    for tick in (0.0, maximum / 2, maximum):
        y = y_of(tick)
        parts.append(f'<line class="qa-grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="qa-chart-axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(fmt(tick))}</text>')
    if reference is not None:
        y = y_of(reference)
        parts.append(f'<line class="qa-reference" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
    runs: list[list[tuple[float, float]]] = [[]]
    for index, point in enumerate(points):
        x = left + index * step
        parts.append(f'<text class="qa-chart-axis" x="{x}" y="{height - 14}" text-anchor="middle">'
                     f'{escape(point.label)}</text>')
        if point.value is None:
            runs.append([])
            continue
        runs[-1].append((x, y_of(point.value)))
        parts.append(f'<circle class="qa-point" cx="{x}" cy="{y_of(point.value):.1f}" r="3">'
                     f'<title>{escape(point.label)}: {escape(fmt(point.value))}</title></circle>')
    for run in runs:
        if len(run) > 1:
            coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(f'<polyline class="qa-line" points="{coordinates}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  # every piece of text in it was escaped above
