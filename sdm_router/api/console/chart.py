"""The overview's small chart: requests and the accepted share over time, as inline SVG."""

from __future__ import annotations

from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 320, 80, 4


def _points(values: Sequence[float], top: float) -> str:
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    scale = (HEIGHT - 2 * PAD) / top if top > 0 else 0.0
    return " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - value * scale:.1f}" for i, value in enumerate(values)
    )


def spark(series: Sequence[dict[str, int]]) -> dict[str, str]:
    """Polyline points for the requests (scaled to their peak) and the accepted share (0 to 1)
    of each slice; the template draws them (Jinja escapes nothing here: numbers only)."""
    requests = [float(point["requests"]) for point in series]
    shares = [
        point["accepted"] / point["requests"] if point["requests"] else 0.0 for point in series
    ]
    return {
        "requests": _points(requests, max(requests, default=0.0)),
        "accepted": _points(shares, 1.0),
        "peak": str(int(max(requests, default=0.0))),
    }
