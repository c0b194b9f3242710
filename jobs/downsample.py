"""Cut a long curve to a few points that keep its shape: min/max bucketing by step.

The first and the last point stay; the steps between are split into equal-width buckets, and each
bucket keeps its lowest and its highest value. A spike or a dip therefore survives however many
points fall in its bucket, and so do the curve's global minimum and maximum, which averaging or
taking every k-th point would lose.

`downsample_curve` is the rule in pure Python, tested alone; the metrics selector does the same in
the database (jobs.selectors.job_metrics_downsampled), with the same `bucket_index`, and a test
holds the two equal.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def downsample_curve(points: Sequence[T], max_points: int, *, step: Callable[[T], float],
                     value: Callable[[T], float]) -> list[T]:
    """At most `max_points` of one curve's points, in step order (ties in input order).

    Global minimum and maximum are kept from `max_points` = 4 on; with 2 or 3 only the ends fit.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2 (the first and the last point).")
    ordered = sorted(points, key=step)  # stable, and linear on the already-ordered rows a query gives
    if len(ordered) <= max_points:
        return ordered
    keep = {0, len(ordered) - 1}
    for bucket in _buckets([step(p) for p in ordered], bucket_count(max_points)):
        keep.update(_extremes([value(ordered[i]) for i in bucket], bucket.start))
    return [ordered[i] for i in sorted(keep)]


def bucket_count(max_points: int) -> int:
    """Buckets for the inner points: two kept in each, plus the first and the last point."""
    return (max_points - 2) // 2


def bucket_index(step: float, first: float, last: float, count: int) -> int:
    """Which of `count` equal-width buckets between the first and the last step holds `step`."""
    if last == first:  # all at one step: one bucket takes them all
        return 0
    return min(int((step - first) * count // (last - first)), count - 1)


def _buckets(steps: list[float], count: int) -> list[range]:
    """The inner points (not the first nor the last) as `count` index ranges of equal step width."""
    if count <= 0:
        return []
    first, last = steps[0], steps[-1]
    edges = [1] * (count + 1)
    for i in range(1, len(steps) - 1):
        edges[bucket_index(steps[i], first, last, count) + 1] = i + 1
    for b in range(1, count + 1):  # an empty bucket ends where the one before it did
        edges[b] = max(edges[b], edges[b - 1])
    return [range(edges[b], edges[b + 1]) for b in range(count) if edges[b + 1] > edges[b]]


def _extremes(values: list[float], offset: int) -> set[int]:
    """Indices of the lowest and the highest value; NaNs lose to any number (a NaN-only bucket keeps its first)."""
    numbers = [i for i, v in enumerate(values) if not math.isnan(v)]
    if not numbers:
        return {offset}
    low = min(numbers, key=values.__getitem__)
    high = max(numbers, key=values.__getitem__)
    return {offset + low, offset + high}
