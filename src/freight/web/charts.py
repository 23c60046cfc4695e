"""Server-rendered SVG charts and the numbers the dashboard shows. Pure: data in, text out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from freight.store.batches import BatchRecord
from freight.store.usage import ThroughputPoint

MAX_POINTS = 60


@dataclass(frozen=True)
class Progress:
    num_done: int
    num_total: int

    @property
    def percent(self) -> int:
        """Whole percent done, 100 only when everything is (never rounded up to it)."""
        if self.num_total <= 0:
            return 0
        return min(100, math.floor(100 * self.num_done / self.num_total))


def progress(batch: BatchRecord) -> Progress:
    return Progress(batch.num_finished, batch.num_total)


def throughput_bucket(span_seconds: float) -> int:
    """Seconds per bar so that a batch's run fits in at most MAX_POINTS bars."""
    return max(1, math.ceil(span_seconds / MAX_POINTS))


def throughput_svg(
    points: list[ThroughputPoint],
    *,
    bucket_seconds: int,
    start: float,
    width: int = 720,
    height: int = 220,
) -> str:
    """Bars of generated tokens per second over the batch's run, as an inline SVG."""
    left, bottom, top, right = 56, 28, 12, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    if not points:
        return (
            f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="no results yet"><text x="{width / 2}" y="{height / 2}" '
            'text-anchor="middle">No results yet</text></svg>'
        )
    first = int(start // bucket_seconds) * bucket_seconds
    last = points[-1].bucket_start
    num_slots = max(1, (last - first) // bucket_seconds + 1)
    rates = {p.bucket_start: p.output_tokens / bucket_seconds for p in points}
    peak = max(rates.values()) or 1.0
    slot_w = plot_w / num_slots
    bars = []
    for bucket_start, rate in sorted(rates.items()):
        slot = (bucket_start - first) // bucket_seconds
        h = plot_h * rate / peak
        x = left + slot * slot_w
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, slot_w - 2):.1f}" '
            f'height="{h:.1f}"><title>{rate:,.1f} tokens/s at +{bucket_start - first} s'
            "</title></rect>"
        )
    span = num_slots * bucket_seconds
    axis = (
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>'
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{peak:,.0f}</text>'
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 8}">0 s</text>'
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end">{span} s</text>'
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">'
        "generated tokens/s</text>"
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="throughput over time">{axis}<g class="bars">{"".join(bars)}</g></svg>'
    )
