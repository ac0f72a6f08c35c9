"""Charts for the admin dashboard, drawn here as SVG: no script, no CDN, no internet needed.

One chart shape: stacked bars of tasks finished per time bucket (succeeded below, failed
on top), with the failure rate of each bucket as a line on its own 0–100 % scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 40, 12, 24  # room for the axes' labels
OK_COLOUR, FAILED_COLOUR, RATE_COLOUR = "#79aec8", "#ba2121", "#e8a33d"


@dataclass
class Bucket:
    start: datetime
    succeeded: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.done if self.done else None


def _nice_top(value: int) -> int:
    """The y axis' top: 1, 2 or 5 times a power of ten, at least ``value``."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale >= value:
                return m * scale
        scale *= 10


def throughput_chart(
    buckets: Sequence[Bucket], label: str, tick_every: int, fmt: str
) -> SafeString:
    """Bars per bucket with a failure-rate line; ``fmt`` formats the x axis' times."""
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_top(max((b.done for b in buckets), default=0))
    slot = inner_w / max(len(buckets), 1)
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg class="leek-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}">',
        f'<line x1="{LEFT}" y1="{TOP + inner_h}" x2="{LEFT + inner_w}" y2="{TOP + inner_h}" '
        'stroke="#999" stroke-width="1"/>',
    ]
    for frac in (0.5, 1.0):
        y = TOP + inner_h * (1 - frac)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + inner_w}" y2="{y:.1f}" '
            'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_count(top * frac)}</text>'
            f'<text x="{LEFT + inner_w + 6}" y="{y + 4:.1f}" fill="{RATE_COLOUR}">'
            f"{int(frac * 100)}%</text>"
        )
    rate_points = []
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + (slot - bar) / 2
        ok_h = inner_h * b.succeeded / top
        bad_h = inner_h * b.failed / top
        base = TOP + inner_h
        tip = escape(f"{b.start:{fmt}}: {b.succeeded} succeeded, {b.failed} failed")
        parts.append(f'<g class="leek-bar"><title>{tip}</title>')
        if b.succeeded:
            parts.append(
                f'<rect x="{x:.1f}" y="{base - ok_h:.1f}" width="{bar:.1f}" height="{ok_h:.1f}" '
                f'fill="{OK_COLOUR}"/>'
            )
        if b.failed:
            parts.append(
                f'<rect class="leek-failed" x="{x:.1f}" y="{base - ok_h - bad_h:.1f}" '
                f'width="{bar:.1f}" height="{bad_h:.1f}" fill="{FAILED_COLOUR}"/>'
            )
        # an empty bucket still shows its tooltip
        parts.append(
            f'<rect x="{LEFT + i * slot:.1f}" y="{TOP}" width="{slot:.1f}" height="{inner_h}" '
            'fill="transparent"/></g>'
        )
        rate = b.failure_rate
        if rate is not None:
            rate_points.append(f"{x + bar / 2:.1f},{TOP + inner_h * (1 - rate):.1f}")
        if i % tick_every == 0:
            parts.append(
                f'<text x="{LEFT + i * slot:.1f}" y="{HEIGHT - 6}">{escape(f"{b.start:{fmt}}")}</text>'
            )
    if len(rate_points) > 1:
        parts.append(
            f'<polyline class="leek-rate" points="{" ".join(rate_points)}" fill="none" '
            f'stroke="{RATE_COLOUR}" stroke-width="2"/>'
        )
    elif rate_points:
        cx, cy = rate_points[0].split(",")
        parts.append(f'<circle class="leek-rate" cx="{cx}" cy="{cy}" r="3" fill="{RATE_COLOUR}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text above is escaped


def _count(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"
