"""Inline SVG charts: horizontal bars and a column series, sized for a report page."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")


def bars(items: Sequence[tuple[str, float]], *, width: int = 560, row_px: int = 26, unit: str = "") -> str:
    """One labelled horizontal bar per item, longest = full width."""
    if not items:
        return '<p class="empty">no data</p>'
    label_px, value_px = 170, 90
    top = max((v for _, v in items), default=0) or 1
    span = width - label_px - value_px
    height = row_px * len(items) + 4
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * row_px + 2
        w = max(1.0, span * value / top) if value else 0
        rows.append(
            f'<text x="{label_px - 8}" y="{y + row_px * 0.65:.1f}" text-anchor="end">{escape(str(label))}</text>'
            f'<rect x="{label_px}" y="{y + 3}" width="{w:.1f}" height="{row_px - 8}" rx="3" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{label_px + w + 6:.1f}" y="{y + row_px * 0.65:.1f}">{value:,.0f}{escape(unit)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">{"".join(rows)}</svg>'
    )


def columns(items: Sequence[tuple[str, float]], *, width: int = 560, height: int = 160) -> str:
    """A column per item (time series), labels on the first and last column only."""
    if not items:
        return '<p class="empty">no data</p>'
    top = max((v for _, v in items), default=0) or 1
    plot_h = height - 36
    label_room = 14  # above the tallest column, for its value
    step = width / len(items)
    parts = [f'<line x1="0" y1="{plot_h + 2}" x2="{width}" y2="{plot_h + 2}" stroke="#999"/>']
    for i, (label, value) in enumerate(items):
        h = (plot_h - label_room) * value / top
        x = i * step
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{plot_h + 2 - h:.1f}" width="{max(1.0, step - 4):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {value:,.0f}</title></rect>'
        )
        if value:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{plot_h - h - 2:.1f}" text-anchor="middle" '
                f'font-size="10">{value:,.0f}</text>'
            )
    for i in (0, len(items) - 1):
        anchor = "start" if i == 0 else "end"
        x = 0 if i == 0 else width
        parts.append(
            f'<text x="{x}" y="{height - 8}" text-anchor="{anchor}" font-size="11">{escape(items[i][0])}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">{"".join(parts)}</svg>'
    )
