import random
from datetime import timedelta
from decimal import Decimal

import pytest

from cockpit import histogram, rollups
from cockpit.models import Rollup, RollupSlice
from tests.cockpit.rollup_traffic import (
    T0,
    assert_close,
    exact_quantile,
    floor_minute,
    ingest,
    random_run,
    record,
    traffic,
    truth_by_minute,
)
from traces.models import Agent, Run, Span

LATER = T0 + timedelta(days=2)  # every bucket of the traffic has settled by then


@pytest.fixture(params=["sql", "orm"])
def engine(request, monkeypatch):
    """Both fold paths: set-based SQL (PostgreSQL) and the portable ORM one (SQLite)."""
    monkeypatch.setattr(rollups, "_use_sql", lambda: request.param == "sql")
    return request.param


def minute_rows(**filters):
    rows = Rollup.objects.filter(resolution="1m", **filters)
    return {(r.agent_id, r.bucket_start, r.dim_kind, r.dim_value): r for r in rows}


def snapshot():
    return sorted(
        (
            r.resolution,
            r.agent_id,
            r.bucket_start,
            r.dim_kind,
            r.dim_value,
            r.runs,
            r.successes,
            r.error_spans,
            r.input_tokens,
            r.cost_usd,
            r.run_hist,
            r.llm_hist,
            r.tool_hist,
            r.errors_by_type,
        )  # fmt: skip
        for r in Rollup.objects.all()
    )


def test_minute_rollups_match_a_brute_force_count_over_raw_runs_and_spans(project, engine):
    ingest(project, traffic(random.Random(1)))
    rollups.fold_pass()
    truth = truth_by_minute()
    rows = minute_rows(dim_kind="")
    assert set(truth) == {(a, m) for a, m, _, _ in rows}
    for (agent_id, minute), expected in truth.items():
        row = rows[(agent_id, minute, "", "")]
        assert row.runs == expected["runs"]
        assert (row.successes, row.failures, row.escalated, row.abandoned, row.unknown) == (
            expected["success"], expected["failure"], expected["escalated"],
            expected["abandoned"], expected["unknown"],
        )  # fmt: skip
        assert row.error_runs == expected["error_runs"]
        assert (row.llm_calls, row.tool_calls) == (expected["llm_calls"], expected["tool_calls"])
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            assert getattr(row, name) == expected[name]
        assert row.cost_usd == expected["cost_usd"]
        assert row.cost_unknown_runs == expected["cost_unknown_runs"]
        assert row.error_spans == expected["error_spans"]
        assert row.errors_by_type == {
            k.removeprefix("error:"): v for k, v in expected.items() if k.startswith("error:")
        }
        assert row.tool_errors_transient == expected["tool_transient"]
        assert row.tool_errors_permanent == expected["tool_permanent"]
        assert histogram.count(row.run_hist) == row.runs


def test_dimension_rows_partition_the_runs_and_model_rows_hold_each_models_calls(project, engine):
    ingest(project, traffic(random.Random(2), agents=("refunds",), runs=80))
    rollups.fold_pass()
    totals = minute_rows(dim_kind="")
    for dim_kind in ("team", "task_type", "version", "environment"):
        for (agent_id, minute, _, _), total in totals.items():
            parts = Rollup.objects.filter(
                resolution="1m", dim_kind=dim_kind, agent_id=agent_id, bucket_start=minute
            )
            assert sum(p.runs for p in parts) == total.runs
            assert sum(p.cost_usd for p in parts) == total.cost_usd
    llm = Span.objects.filter(kind="llm")
    for model in ("gpt-4o-mini", "claude-x", "house"):
        rows = Rollup.objects.filter(resolution="1m", dim_kind="model", dim_value=model)
        spans = llm.filter(model=model)
        assert sum(r.llm_calls for r in rows) == spans.count()
        assert sum(r.input_tokens for r in rows) == sum(s.input_tokens for s in spans)
        assert sum(r.cost_usd for r in rows) == sum(s.cost_usd or 0 for s in spans)
        assert sum(r.runs for r in rows) == spans.values("run_id").distinct().count()
        assert all(r.cost_known == (model != "house") for r in rows)


def test_window_percentiles_are_within_one_percent_of_the_exact_ones(project, engine):
    ingest(project, traffic(random.Random(3), agents=("refunds",), runs=300))
    rollups.fold_pass()
    agent = Agent.objects.get(name="refunds")
    stats = rollups.agent_window(None, T0, T0 + timedelta(minutes=5), steps=True, now=LATER)[
        agent.pk
    ]
    runs = [r.duration_ms for r in Run.objects.all()]
    assert stats.runs == len(runs)
    for q, estimate in zip((0.5, 0.95, 0.99), (stats.p50, stats.p95, stats.p99), strict=True):
        assert_close(estimate, exact_quantile(runs, q))
    for kind in ("llm", "tool"):
        steps = [s.duration_ms for s in Span.objects.filter(kind=kind)]
        estimates = stats.quantiles((0.5, 0.95, 0.99), kind)
        for q, estimate in zip((0.5, 0.95, 0.99), estimates, strict=True):
            assert_close(estimate, exact_quantile(steps, q))


def test_a_late_span_folds_into_the_minute_it_belongs_to(project, engine):
    spans = random_run(random.Random(4), "refunds", T0 + timedelta(seconds=10))
    ingest(project, spans[:-1])
    rollups.fold_pass()
    ingest(project, spans[-1:])  # arrives after its minute was folded
    rollups.fold_pass()
    row = Rollup.objects.get(resolution="1m", dim_kind="")
    run = Run.objects.get()
    assert (row.runs, row.llm_calls, row.tool_calls) == (1, run.llm_calls, run.tool_calls)
    assert row.llm_calls + row.tool_calls == len(spans) - 1
    assert histogram.count(row.llm_hist) + histogram.count(row.tool_hist) == len(spans) - 1


def test_a_root_span_arriving_late_moves_its_run_without_counting_it_twice(project, engine):
    start = T0 + timedelta(seconds=58)
    root = record("a" * 32, "", "agent", start, 5000, "refunds", span_id="f" * 16)
    child = record("a" * 32, "f" * 16, "llm", start + timedelta(seconds=3), 200, "refunds")
    ingest(project, [child])  # the child starts in the next minute
    rollups.fold_pass()
    assert Rollup.objects.get(resolution="1m", dim_kind="").bucket_start == floor_minute(
        start + timedelta(seconds=3)
    )
    ingest(project, [root])
    rollups.fold_pass()
    row = Rollup.objects.get(resolution="1m", dim_kind="")
    assert (row.bucket_start, row.runs) == (floor_minute(start), 1)


def test_duplicate_spans_change_nothing(project, engine):
    spans = traffic(random.Random(5), agents=("refunds",), runs=30)
    ingest(project, spans)
    rollups.fold_pass()
    before = snapshot()
    ingest(project, spans[::3])  # sent again
    rollups.fold_pass()
    assert snapshot() == before


def test_folding_twice_changes_nothing(project, engine):
    ingest(project, traffic(random.Random(6), runs=40))
    rollups.fold_pass()
    rollups.coarse_pass()
    before = snapshot()
    buckets = {(r.agent_id, r.bucket_start) for r in Rollup.objects.filter(resolution="1m")}
    rollups.fold_buckets(buckets)
    rollups.fold_pass()
    assert snapshot() == before


def test_the_sql_and_orm_folds_write_the_same_rows(project, monkeypatch):
    ingest(project, traffic(random.Random(7), runs=60))
    rollups.fold_pass()
    sql = snapshot()
    monkeypatch.setattr(rollups, "_use_sql", lambda: False)
    rollups.fold_buckets({(r.agent_id, r.bucket_start) for r in Rollup.objects.all()})
    assert snapshot() == sql


def test_hour_and_day_rows_equal_the_sums_of_their_minutes(project, engine):
    rng = random.Random(8)
    spans = traffic(rng, runs=50, minutes=3, start=T0) + traffic(
        rng, runs=50, minutes=3, start=T0 + timedelta(hours=1, minutes=30)
    )
    ingest(project, spans)
    rollups.fold_pass()
    assert rollups.coarse_pass() == 2 * 3 + 2  # two agents: 3 hours, then 1 day each
    for resolution, size in (("1h", timedelta(hours=1)), ("1d", timedelta(days=1))):
        for row in Rollup.objects.filter(resolution=resolution):
            minutes = Rollup.objects.filter(
                resolution="1m", agent_id=row.agent_id, dim_kind=row.dim_kind,
                dim_value=row.dim_value, bucket_start__gte=row.bucket_start,
                bucket_start__lt=row.bucket_start + size,
            )  # fmt: skip
            assert row.runs == sum(m.runs for m in minutes)
            assert row.cost_usd == sum((m.cost_usd for m in minutes), Decimal(0))
            assert histogram.normalise(row.run_hist) == histogram.merge(m.run_hist for m in minutes)
            assert histogram.normalise(row.llm_hist) == histogram.merge(m.llm_hist for m in minutes)
    assert rollups.coarse_pass() == 0  # nothing left dirty


def test_a_long_window_reads_days_and_hours_and_gives_the_same_answer(project, engine):
    rng = random.Random(9)
    ingest(project, traffic(rng, agents=("refunds",), runs=40, minutes=120, start=T0))
    rollups.fold_pass()
    rollups.coarse_pass()
    agent = Agent.objects.get()
    since, until = T0 - timedelta(days=3, minutes=7), T0 + timedelta(days=1, minutes=3)
    tiles = rollups.window_tiles(since, until, now=LATER)
    assert [t[0] for t in tiles] == ["1m", "1h", "1d", "1h", "1m"]
    coarse = rollups.agent_window([agent.pk], since, until, now=LATER)[agent.pk]
    fine = rollups.WindowStats()
    for row in Rollup.objects.filter(resolution="1m", dim_kind="").values():
        fine.add(row)
    assert (coarse.runs, coarse.cost_usd, coarse.run_hist) == (
        fine.runs,
        fine.cost_usd,
        fine.run_hist,
    )


def test_unsettled_hours_are_read_from_minutes():
    now = T0 + timedelta(minutes=2)
    tiles = rollups.window_tiles(now - timedelta(hours=3), now, now=now)
    assert tiles[-1][0] == "1m" and tiles[-1][1] <= now - rollups.COARSE_SETTLE


def test_each_read_is_one_query(project, django_assert_num_queries):
    ingest(project, traffic(random.Random(10), runs=20))
    rollups.fold_pass()
    agent = Agent.objects.first()
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    with django_assert_num_queries(1):
        rollups.agent_window(None, *window, now=LATER)
    with django_assert_num_queries(1):
        rollups.fleet_totals(*window, now=LATER)
    with django_assert_num_queries(1):
        rollups.series(agent.pk, *window, timedelta(minutes=5), now=LATER)
    with django_assert_num_queries(1):
        rollups.breakdown(agent.pk, "model", *window, now=LATER)
    with django_assert_num_queries(1):
        rollups.breakdown_series(agent.pk, "version", *window, now=LATER)
    with django_assert_num_queries(1):
        rollups.percentiles(None, *window, kind="llm", now=LATER)
    with django_assert_num_queries(1):
        rollups.agent_windows([agent.pk], {"a": window, "b": (T0, T0 + timedelta(hours=3))})
    with django_assert_num_queries(1):
        rollups.breakdowns(agent.pk, ["model", "version", "task_type"], *window, now=LATER)


def comparable(stats: rollups.WindowStats) -> dict:
    fields = dict(stats.__dict__)
    fields["duration_ms_sum"] = pytest.approx(fields["duration_ms_sum"])
    return fields


def test_reads_summed_in_sql_equal_the_rows_merged_in_python(project, monkeypatch):
    ingest(project, traffic(random.Random(12), runs=120))
    rollups.fold_pass()
    rollups.coarse_pass(now=LATER)
    agent = Agent.objects.order_by("pk").first()
    since, until = T0 - timedelta(hours=2), T0 + timedelta(hours=3)
    step = timedelta(minutes=10)

    def reads():
        windows = {"long": (since, until), "short": (T0, T0 + timedelta(minutes=20))}
        many = rollups.agent_windows([agent.pk], windows, counts_only=["short"], now=LATER)
        tables = rollups.breakdowns(agent.pk, ["model", "task_type"], since, until, now=LATER)
        return {
            **{("agent", k): comparable(s) for k, s in rollups.agent_window(None, since, until, steps=True, now=LATER).items()},
            **{("series", at): comparable(s) for at, s in rollups.series(agent.pk, since, until, step, now=LATER)},
            **{("model", k): comparable(s) for k, s in rollups.breakdown(None, "model", since, until, now=LATER).items()},
            **{
                ("version", value, at): comparable(s)
                for value, points in rollups.breakdown_series(agent.pk, "version", since, until, step, now=LATER).items()
                for at, s in points
            },
            **{("windows", name, k): comparable(s) for name, by_agent in many.items() for k, s in by_agent.items()},
            **{("tables", kind, k): comparable(s) for kind, table in tables.items() for k, s in table.items()},
        }  # fmt: skip

    in_sql = reads()
    monkeypatch.setattr(rollups, "_aggregate_in_sql", lambda: False)
    in_python = reads()

    assert sum(stats["runs"] for stats in in_sql.values()) > 0
    assert in_sql == in_python


def test_windows_read_for_counts_only_carry_no_histograms(project):
    ingest(project, traffic(random.Random(13), runs=30))
    rollups.fold_pass()
    agent = Agent.objects.order_by("pk").first()
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))

    stats = rollups.agent_windows(
        [agent.pk], {"tile": window, "cost": window}, counts_only=["cost"], now=LATER
    )

    tile, cost = stats["tile"][agent.pk], stats["cost"][agent.pk]
    assert tile.runs == cost.runs > 0
    assert tile.cost_usd == cost.cost_usd
    assert tile.run_hist and tile.p95 is not None
    assert cost.run_hist == {} and cost.p95 is None


def test_series_puts_every_run_in_its_step_and_fills_empty_steps(project):
    ingest(project, traffic(random.Random(11), agents=("refunds",), runs=50, minutes=4))
    rollups.fold_pass()
    agent = Agent.objects.get()
    points = rollups.timeseries(
        agent.pk, "runs", T0 - timedelta(minutes=2), T0 + timedelta(minutes=8),
        timedelta(minutes=2), now=LATER,
    )  # fmt: skip
    assert [p[0] for p in points] == [T0 + timedelta(minutes=m) for m in (-2, 0, 2, 4, 6)]
    assert sum(v for _, v in points) == 50 and points[0][1] == 0 and points[-1][1] == 0
    with pytest.raises(ValueError, match="unknown metric"):
        rollups.timeseries(agent.pk, "__class__", T0, T0 + timedelta(minutes=5))


def test_transient_tool_errors_are_timeouts_rate_limits_and_unavailable_services():
    for name in ("TimeoutError", "rate_limit_exceeded", "HTTP 429", "http.503", "Unavailable"):
        assert rollups.is_transient_error(name)
    for name in ("ValueError", "NotFound", "permission_denied", ""):
        assert not rollups.is_transient_error(name)


def slice_rows(**filters):
    return RollupSlice.objects.filter(**filters).order_by("bucket_start")


def test_each_minute_row_is_the_merge_of_its_ten_second_slices(project, engine):
    ingest(project, traffic(random.Random(9), runs=80, minutes=2))
    rollups.fold_pass()
    minutes = Rollup.objects.filter(resolution="1m")
    assert minutes.filter(dim_kind="model").exists() and minutes.filter(dim_kind="team").exists()
    for row in minutes:
        parts = slice_rows(
            agent_id=row.agent_id, dim_kind=row.dim_kind, dim_value=row.dim_value,
            bucket_start__gte=row.bucket_start,
            bucket_start__lt=row.bucket_start + timedelta(minutes=1),
        )  # fmt: skip
        assert len(parts) > 1 and all(p.bucket_start.second % 10 == 0 for p in parts)
        for name in ("runs", "successes", "error_spans", "llm_calls", "input_tokens", "cost_usd",
                     "cost_unknown_runs"):  # fmt: skip
            assert getattr(row, name) == sum(getattr(p, name) for p in parts)
        for name in ("run_hist", "llm_hist", "tool_hist"):
            assert histogram.count(getattr(row, name)) == sum(
                histogram.count(getattr(p, name)) for p in parts
            )


def test_a_late_span_rebuilds_only_its_own_slice_and_its_minute(project, engine, monkeypatch):
    # Without the margin a pass does not reread the runs the previous one read.
    monkeypatch.setattr(rollups, "WATERMARK_MARGIN", timedelta(0))
    rng = random.Random(10)
    early = random_run(rng, "refunds", T0 + timedelta(seconds=5))
    later = random_run(rng, "refunds", T0 + timedelta(seconds=35))
    ingest(project, early[:-1] + later)
    rollups.fold_pass()
    untouched = slice_rows(bucket_start=T0 + timedelta(seconds=30), dim_kind="").get()
    ingest(project, early[-1:])  # arrives after a later slice of its minute was folded
    rollups.fold_pass()
    assert slice_rows(pk=untouched.pk).get().computed_at == untouched.computed_at
    assert slice_rows(bucket_start=T0, dim_kind="").get().computed_at > untouched.computed_at
    row = Rollup.objects.get(resolution="1m", dim_kind="")
    expected = truth_by_minute()[(row.agent_id, T0)]
    assert (row.runs, row.llm_calls, row.tool_calls) == (
        2, expected["llm_calls"], expected["tool_calls"],
    )  # fmt: skip
    assert (
        histogram.count(row.llm_hist) + histogram.count(row.tool_hist)
        == len(early) + len(later) - 2
    )  # the root spans are neither LLM nor tool steps


def test_a_late_span_in_a_minute_whose_slices_were_pruned_rebuilds_the_whole_minute(
    project, engine
):
    rng = random.Random(11)
    early = random_run(rng, "refunds", T0 + timedelta(seconds=5))
    later = random_run(rng, "refunds", T0 + timedelta(seconds=45))
    ingest(project, early[:-1] + later)
    rollups.fold_pass()
    assert rollups.prune_slices(now=T0 + rollups.SLICE_KEEP + timedelta(minutes=2)) > 0
    assert not RollupSlice.objects.exists()
    assert Rollup.objects.filter(resolution="1m", dim_kind="").get().runs == 2  # minutes stay
    ingest(project, early[-1:])
    rollups.fold_pass()
    row = Rollup.objects.get(resolution="1m", dim_kind="")
    expected = truth_by_minute()[(row.agent_id, T0)]
    assert (row.runs, row.llm_calls, row.tool_calls) == (
        2, expected["llm_calls"], expected["tool_calls"],
    )  # fmt: skip
    assert {s.bucket_start for s in slice_rows(dim_kind="")} == {
        T0, T0 + timedelta(seconds=40),
    }  # fmt: skip
