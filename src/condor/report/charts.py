"""Small charts as inline SVG text: horizontal bars, stacked bars, a heat map, a histogram, intervals, a scatter.

Drawn here rather than by a plotting library because the report must be one offline file and the
charts are simple; every label goes through :func:`html.escape`, since domain names and reasons end up
in the page. No ``style`` attributes: the page's Content-Security-Policy allows only its own style
sheet, and presentation attributes (``fill``, ``font-size``) need no permission. Colours come from CSS
classes (``c0``..``c7``) so that the style sheet decides them.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

LABEL_CHARS = 38
ROW = 18


def _label(text: str, limit: int = LABEL_CHARS) -> str:
    text = str(text)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')


def empty(message: str) -> str:
    return f'<p class="empty">{escape(message)}</p>'


def bars(items: Sequence[tuple[str, float]], title: str, *, width: int = 640, note: str = "") -> str:
    """Horizontal bars, one per (label, value), in the order given."""
    if not items:
        return empty(f"{title}: nothing to show")
    top = max(value for _, value in items) or 1
    left, right = 250, 70
    span = width - left - right
    body = []
    for row, (label, value) in enumerate(items):
        y = row * ROW + 4
        length = max(1.0, span * value / top) if value else 0
        body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="label"><title>{escape(str(label))}</title>'
                    f'{_label(label)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{ROW - 5}" class="c0"/>')
        body.append(f'<text x="{left + length + 4:.1f}" y="{y + 12}" class="value">{_number(value)}</text>')
    if note:
        body.append(f'<text x="{left}" y="{len(items) * ROW + 18}" class="note">{escape(note)}</text>')
    return _svg(width, len(items) * ROW + (28 if note else 10), body, title)


def stacked(items: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], title: str, *, width: int = 640) -> str:
    """Horizontal bars split into ``series`` parts, with a legend."""
    if not items:
        return empty(f"{title}: nothing to show")
    top = max(sum(values) for _, values in items) or 1
    left, right = 250, 90
    span = width - left - right
    body = []
    for index, name in enumerate(series):
        body.append(f'<rect x="{left + index * 150}" y="2" width="12" height="12" class="c{index}"/>'
                    f'<text x="{left + index * 150 + 16}" y="12" class="label">{escape(name)}</text>')
    for row, (label, values) in enumerate(items):
        y = row * ROW + 24
        x = float(left)
        body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="label">{_label(label)}</text>')
        for index, value in enumerate(values):
            length = span * value / top
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{ROW - 5}" class="c{index}">'
                        f'<title>{escape(series[index])}: {_number(value)}</title></rect>')
            x += length
        body.append(f'<text x="{x + 4:.1f}" y="{y + 12}" class="value">{_number(sum(values))}</text>')
    return _svg(width, len(items) * ROW + 30, body, title)


def heatmap(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]], title: str) -> str:
    """A grid of counts, darker for more."""
    if not rows or not columns:
        return empty(f"{title}: nothing to show")
    cell_w, cell_h, left, top = 90, 26, 200, 24
    peak = max((v for line in counts for v in line), default=0) or 1
    body = [f'<text x="{left + i * cell_w + cell_w / 2}" y="16" text-anchor="middle" class="label">{_label(c, 12)}</text>'
            for i, c in enumerate(columns)]
    for r, name in enumerate(rows):
        y = top + r * cell_h
        body.append(f'<text x="{left - 6}" y="{y + 17}" text-anchor="end" class="label">{_label(name, 28)}</text>')
        for c, value in enumerate(counts[r]):
            level = 0 if not value else 1 + round(4 * value / peak)
            body.append(f'<rect x="{left + c * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" class="h{level}">'
                        f'<title>{escape(name)} / {escape(columns[c])}: {value}</title></rect>')
            body.append(f'<text x="{left + c * cell_w + cell_w / 2 - 1}" y="{y + 17}" text-anchor="middle" '
                        f'class="cell{" light" if level >= 4 else ""}">{value:,}</text>')
    return _svg(left + len(columns) * cell_w + 10, top + len(rows) * cell_h + 6, body, title)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, *, unit: str = "characters",
              width: int = 640, height: int = 180) -> str:
    if not counts or not any(counts):
        return empty(f"{title}: nothing to show")
    left, bottom, top = 50, 34, 10
    span_w, span_h = width - left - 10, height - bottom - top
    peak = max(counts)
    bar_w = span_w / len(counts)
    body = [f'<line x1="{left}" y1="{top + span_h}" x2="{left + span_w}" y2="{top + span_h}" class="axis"/>',
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="value">{peak:,}</text>']
    for i, count in enumerate(counts):
        h = span_h * count / peak
        body.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + span_h - h:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
                    f'height="{h:.1f}" class="c0"><title>{_number(edges[i])}-{_number(edges[i + 1])} {escape(unit)}: '
                    f'{count:,}</title></rect>')
    body.append(f'<text x="{left}" y="{height - 14}" class="value">{_number(edges[0])}</text>')
    body.append(f'<text x="{left + span_w}" y="{height - 14}" text-anchor="end" class="value">{_number(edges[-1])} {escape(unit)}</text>')
    return _svg(width, height, body, title)


def intervals(points: Sequence[tuple[str, float, float, float]], title: str, *, low: float = 1, high: float = 10,
              width: int = 640) -> str:
    """A dot with a 95% interval line per (label, value, low, high), on a fixed scale."""
    if not points:
        return empty(f"{title}: nothing to show")
    left, right = 250, 60
    span = width - left - right

    def x(v: float) -> float:
        return left + span * (min(max(v, low), high) - low) / (high - low)

    body = [f'<text x="{x(v)}" y="12" text-anchor="middle" class="value">{v:g}</text>' for v in range(int(low), int(high) + 1)]
    for row, (label, value, lo, hi) in enumerate(points):
        y = row * ROW + 28
        body.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" class="label">{_label(label)}</text>')
        body.append(f'<line x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" class="interval"/>')
        body.append(f'<circle cx="{x(value):.1f}" cy="{y}" r="4" class="c1"><title>{escape(label)}: {value:.2f} '
                    f'[{lo:.2f}, {hi:.2f}]</title></circle>')
        body.append(f'<text x="{x(hi) + 6:.1f}" y="{y + 4}" class="value">{value:.2f}</text>')
    return _svg(width, len(points) * ROW + 36, body, title)


def scatter(points: Sequence[tuple[float, float, int]], groups: Sequence[str], title: str, *, size: int = 520) -> str:
    """Points coloured by group (index into ``groups``), scaled to fill the square, with a legend."""
    if not points:
        return empty(f"{title}: nothing to show")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 12

    def sx(v: float) -> float:
        return pad + (size - 2 * pad) * ((v - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def sy(v: float) -> float:
        return 30 + (size - 30 - pad) * ((v - y0) / (y1 - y0) if y1 > y0 else 0.5)

    body = []
    for index, name in enumerate(groups):
        count = sum(1 for p in points if p[2] == index)
        body.append(f'<circle cx="{pad + 6 + index * 190}" cy="12" r="5" class="c{index + 1}"/>'
                    f'<text x="{pad + 16 + index * 190}" y="16" class="label">{escape(name)} ({count:,})</text>')
    # Reference points first, so the run's own points are drawn on top.
    for x, y, group in sorted(points, key=lambda p: -p[2]):
        body.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" class="c{group + 1} dot"/>')
    return _svg(size, size, body, title)
