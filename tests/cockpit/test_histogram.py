import math
import random

from cockpit import histogram


def exact_quantile(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_every_value_is_reported_within_one_percent():
    for value in [0.013, 0.5, 1, 7.3, 99.99, 1234.5, 86_400_000]:
        index = histogram.bucket_of(value)
        assert (
            abs(histogram.bucket_value(index) - value) / value <= histogram.RELATIVE_ERROR + 1e-12
        )


def test_percentiles_of_a_skewed_sample_are_within_one_percent():
    rng = random.Random(7)
    values = [rng.lognormvariate(6, 1.5) for _ in range(20_000)]
    hist = histogram.from_values(values)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_quantile(values, q)
        assert abs(histogram.percentile(hist, q) - exact) / exact <= 0.01


def test_merging_histograms_equals_the_histogram_of_all_values():
    rng = random.Random(3)
    parts = [[rng.expovariate(1 / 300) for _ in range(500)] for _ in range(10)]
    merged = histogram.merge(histogram.to_json(histogram.from_values(p)) for p in parts)
    assert merged == histogram.from_values([v for p in parts for v in p])


def test_zero_durations_count_as_zero_and_an_empty_histogram_has_no_percentile():
    hist = histogram.from_values([0, 0, 0, 10])
    assert histogram.percentile(hist, 0.5) == 0
    assert histogram.percentile({}, 0.5) is None
    assert histogram.percentiles(None, [0.5, 0.99]) == [None, None]


def test_count_at_most_never_counts_a_value_above_the_threshold():
    hist = histogram.from_values([100, 200, 300, 301, 1000])
    assert histogram.count_at_most(hist, 300) == 2  # 300's bucket reaches past 300
    assert histogram.count_at_most(hist, 310) == 4
    assert histogram.count_at_most(hist, 10_000) == 5
