"""Rollup rows written directly, for tests of what reads rollups (SLOs, budgets, metrics)
without going through ingest and folding: minute rows, and the hour and day rows summed from
them as the coarse pass would."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cockpit import histogram
from cockpit.models import Rollup

NOW = datetime(2026, 5, 14, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_row(
    agent, minute: datetime, *, ok=0, failed=0, durations=None, cost="0", settle=True, **fields
):
    """One agent's minute: `ok` successful and `failed` failed runs, run durations in ms
    (default 1 s each), and their cost."""
    runs = ok + failed
    durations = durations if durations is not None else [1000.0] * runs
    row = Rollup.objects.create(
        resolution=Rollup.Resolution.MINUTE,
        bucket_start=minute.replace(second=0, microsecond=0),
        project_id=agent.project_id,
        agent=agent,
        runs=runs,
        successes=ok,
        failures=failed,
        error_runs=failed,
        cost_usd=Decimal(cost),
        duration_ms_sum=sum(durations),
        run_hist=histogram.to_json(histogram.from_values(durations)),
        **fields,
    )
    if settle:
        settle_coarse_rows(agent)
    return row


def minutes(agent, *, start: datetime, count: int, **per_minute):
    """`count` consecutive minute rows from `start`, each with per_minute's runs."""
    rows = [
        minute_row(agent, start + timedelta(minutes=i), settle=False, **per_minute)
        for i in range(count)
    ]
    settle_coarse_rows(agent)
    return rows


SUMMED = ("runs", "successes", "failures", "error_runs", "unknown", "cost_usd", "duration_ms_sum")


def settle_coarse_rows(agent) -> None:
    """Rewrite the agent's hour rows from its minute rows and day rows from hour rows."""
    for finer, coarser, size in (
        (Rollup.Resolution.MINUTE, Rollup.Resolution.HOUR, timedelta(hours=1)),
        (Rollup.Resolution.HOUR, Rollup.Resolution.DAY, timedelta(days=1)),
    ):
        Rollup.objects.filter(agent=agent, resolution=coarser).delete()
        buckets: dict[datetime, dict] = {}
        for row in Rollup.objects.filter(agent=agent, resolution=finer, dim_kind=""):
            start = EPOCH + ((row.bucket_start - EPOCH) // size) * size
            bucket = buckets.setdefault(start, dict.fromkeys(SUMMED, 0) | {"hists": []})
            for name in SUMMED:
                bucket[name] += getattr(row, name)
            bucket["hists"].append(row.run_hist)
        for start, sums in buckets.items():
            hists = sums.pop("hists")
            Rollup.objects.create(
                resolution=coarser,
                bucket_start=start,
                project_id=agent.project_id,
                agent=agent,
                run_hist=histogram.to_json(histogram.merge(hists)),
                **sums,
            )
