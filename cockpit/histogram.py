"""A mergeable latency histogram with logarithmic buckets, exact to about 1 % relative error.

Bucket i holds the values x with GAMMA**(i-1) < x <= GAMMA**i (GAMMA = 1.02). Reporting a
bucket by 2 * GAMMA**i / (GAMMA + 1), the point of equal relative distance to both edges, is
off by at most (GAMMA - 1) / (GAMMA + 1) ≈ 0.99 % for any value in it (the DDSketch bound).
Values at or below zero go to ZERO_BUCKET and are reported as 0.

A histogram is a sparse dict {bucket index: count}; stored as JSON its keys become strings,
which every function here accepts. Merging is adding counts, so minute histograms add up to
exact hour and day histograms, and a window's percentiles are exact to ~1 % however long it is.
The same bucket formula lives in SQL in cockpit.rollups (BUCKET_SQL); keep them in step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GAMMA = 1.02
LOG_GAMMA = math.log(GAMMA)
# Smaller than any real duration in milliseconds; such values count as zero.
MIN_VALUE = 1e-6
ZERO_BUCKET = -100_000
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)

Histogram = dict[int, int]


def bucket_of(value: float) -> int:
    if value <= MIN_VALUE:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket stands for: within RELATIVE_ERROR of every value in it."""
    if index == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def bucket_upper(index: int) -> float:
    """The largest value a bucket holds (every value in it is <= this)."""
    if index == ZERO_BUCKET:
        return MIN_VALUE
    return GAMMA**index


def from_values(values: Iterable[float]) -> Histogram:
    histogram: Histogram = {}
    for value in values:
        index = bucket_of(value)
        histogram[index] = histogram.get(index, 0) + 1
    return histogram


def normalise(histogram: Mapping | None) -> Histogram:
    """A histogram with int keys, from the JSON form (string keys) or None."""
    if not histogram:
        return {}
    return {int(k): int(v) for k, v in histogram.items() if v}


def merge(histograms: Iterable[Mapping | None]) -> Histogram:
    total: Histogram = {}
    for histogram in histograms:
        if not histogram:
            continue
        for key, count in histogram.items():
            index = int(key)
            total[index] = total.get(index, 0) + int(count)
    return total


def to_json(histogram: Mapping) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(histogram.items(), key=lambda kv: int(kv[0])) if v}


def count(histogram: Mapping | None) -> int:
    return sum(int(v) for v in histogram.values()) if histogram else 0


def percentile(histogram: Mapping | None, q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1): the value of rank ceil(q * n), to ~1 %.

    None for an empty histogram (no data is not zero latency).
    """
    return percentiles(histogram, (q,))[0]


def percentiles(histogram: Mapping | None, qs: Iterable[float]) -> list[float | None]:
    """Several quantiles in one walk over the buckets."""
    qs = list(qs)
    hist = normalise(histogram)
    n = sum(hist.values())
    if n == 0:
        return [None for _ in qs]
    ranks = [max(1, math.ceil(q * n - 1e-9)) for q in qs]
    results: list[float | None] = [None] * len(qs)
    order = sorted(range(len(qs)), key=lambda i: ranks[i])
    cumulative = 0
    position = 0
    for index in sorted(hist):
        cumulative += hist[index]
        while position < len(order) and ranks[order[position]] <= cumulative:
            results[order[position]] = bucket_value(index)
            position += 1
        if position == len(order):
            break
    return results


def count_at_most(histogram: Mapping | None, threshold: float) -> int:
    """How many values are <= threshold, to the bucket: a bucket counts when its top is.

    The bucket that straddles the threshold counts as above it, so a latency SLO read from a
    histogram errs on the strict side by at most one bucket (~2 % of the threshold).
    """
    hist = normalise(histogram)
    return sum(n for index, n in hist.items() if bucket_upper(index) <= threshold)
