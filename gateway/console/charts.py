"""Server-drawn SVG charts for the supervisor board: no chart library in the browser.

Each chart is an ``<svg role="img">`` with a ``<title>`` and an ``aria-label`` that states the
figures in words, so a screen reader reads what the bars show. Colours meet WCAG AA contrast on
the page's white background.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

BAR = "#1f5fa8"
"""Bars: 6.4:1 against white."""
TEXT = "#1a1a1a"
GRID = "#767676"


def bar_chart(
    title: str, pairs: Sequence[tuple[str, int]], *, width: int = 420, unit: str = ""
) -> Markup:
    """Horizontal bars, one per (label, count), labelled with their values."""
    row = 26
    label_w = 150
    height = row * max(1, len(pairs)) + 8
    top = max((v for _, v in pairs), default=0) or 1
    spoken = ", ".join(f"{label}: {value}{unit}" for label, value in pairs)
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}: {escape(spoken)}">',
        f"<title>{escape(title)}</title>",
    ]
    span = width - label_w - 50
    for i, (label, value) in enumerate(pairs):
        y = 4 + i * row
        w = round(span * value / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" fill="{TEXT}" '
            f'font-size="13">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 1)}" height="18" fill="{BAR}"/>'
        )
        parts.append(
            f'<text x="{label_w + max(w, 1) + 6}" y="{y + 17}" fill="{TEXT}" '
            f'font-size="13">{value}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text part is escaped above)


def meter(title: str, share: float | None, *, width: int = 420) -> Markup:
    """One share (0..1) as a filled bar with its percentage; "no eligible calls yet" for None."""
    words = "no eligible calls yet" if share is None else f"{share * 100:.0f}%"
    filled = 0 if share is None else round((width - 2) * max(0.0, min(1.0, share)))
    return Markup(  # noqa: S704 (the title and words are escaped)
        f'<svg class="chart" role="img" width="{width}" height="44" viewBox="0 0 {width} 44" '
        f'aria-label="{escape(title)}: {escape(words)}"><title>{escape(title)}</title>'
        f'<rect x="1" y="1" width="{width - 2}" height="22" fill="#ffffff" stroke="{GRID}"/>'
        f'<rect x="1" y="1" width="{filled}" height="22" fill="{BAR}"/>'
        f'<text x="0" y="40" fill="{TEXT}" font-size="13">{escape(words)}</text></svg>'
    )
