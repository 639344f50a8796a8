"""Cost explorer queries: spend by dimension, day comparisons, the costliest runs, the forecast.

Totals and breakdowns by agent, team, model, task type and environment come from rollups.
Users and conversations are not rollup dimensions (too many values), so they are aggregated
from Run rows of the period; the costliest runs are read from Run rows through run_cost_idx
(ORDER BY cost_usd DESC), and what made them expensive from their spans (span_unique_in_run).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from cockpit import forecast, rollups
from cockpit.models import Rollup
from cockpit.rollups import WindowStats
from traces.models import Agent, Run, Span
from traces.pricing import provider_of_model

PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_PERIOD = "7d"
ROLLUP_DIMENSIONS = {
    "team": Rollup.Dim.TEAM,
    "model": Rollup.Dim.MODEL,
    "task_type": Rollup.Dim.TASK_TYPE,
    "environment": Rollup.Dim.ENVIRONMENT,
}
RUN_DIMENSIONS = {"user": "user_id", "conversation": "conversation_id"}
DIMENSIONS = (
    "agent",
    "team",
    "model",
    "provider",
    "task_type",
    "environment",
    "user",
    "conversation",
)
DIMENSION_LABELS = {
    "agent": "Agent",
    "team": "Team",
    "model": "Model",
    "provider": "Provider",
    "task_type": "Task type",
    "environment": "Environment",
    "user": "User",
    "conversation": "Conversation",
}
# Rows shown per breakdown on the page (the CSV has them all).
TOP_ROWS = 10
# The costliest 1 % of runs, at most this many.
MAX_TOP_RUNS = 25
# Recent runs whose LLM spans name the provider of each model (see providers_of).
PROVIDER_SAMPLE_RUNS = 300


@dataclass
class SpendRow:
    value: str
    runs: int
    successes: int
    cost_usd: Decimal
    share: float = 0.0  # of the period's spend, 0..1

    @property
    def cost_per_run(self) -> Decimal | None:
        return self.cost_usd / self.runs if self.runs else None

    @property
    def cost_per_success(self) -> Decimal | None:
        return self.cost_usd / self.successes if self.successes else None


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    return now - PERIODS.get(period, PERIODS[DEFAULT_PERIOD]), now


def _rows_from_stats(stats: dict[str, WindowStats], total: Decimal) -> list[SpendRow]:
    rows = [
        SpendRow(value, s.runs, s.successes, s.cost_usd, float(s.cost_usd / total) if total else 0)
        for value, s in stats.items()
    ]
    return sorted(rows, key=lambda row: (-row.cost_usd, row.value))


def spend_by(dimension: str, since: datetime, until: datetime, *, now=None) -> list[SpendRow]:
    """Spend in [since, until) by one dimension, costliest first."""
    total = rollups.fleet_totals(since, until, now=now).cost_usd
    if dimension == "agent":
        names = dict(Agent.objects.values_list("pk", "name"))
        stats = rollups.agent_window(None, since, until, now=now)
        return _rows_from_stats({names.get(pk, f"#{pk}"): s for pk, s in stats.items()}, total)
    if dimension in ROLLUP_DIMENSIONS:
        stats = rollups.breakdown(None, ROLLUP_DIMENSIONS[dimension], since, until, now=now)
        return _rows_from_stats(stats, total)
    if dimension == "provider":
        by_model = rollups.breakdown(None, Rollup.Dim.MODEL, since, until, now=now)
        providers = providers_of(by_model, since)
        merged: dict[str, WindowStats] = defaultdict(WindowStats)
        for model, stats in by_model.items():
            merged[providers.get(model, "")].add(stats.__dict__)
        return _rows_from_stats(dict(merged), total)
    if dimension in RUN_DIMENSIONS:
        return spend_by_run_field(RUN_DIMENSIONS[dimension], since, until, total)
    raise ValueError(f"unknown dimension {dimension!r}")


def spend_by_run_field(
    field_name: str, since: datetime, until: datetime, total: Decimal, limit: int | None = TOP_ROWS
) -> list[SpendRow]:
    """Users or conversations, costliest first: aggregated from the period's runs."""
    rows = (
        Run.objects.filter(started_at__gte=since, started_at__lt=until)
        .exclude(**{field_name: ""})
        .values(field_name)
        .order_by()
        .annotate(
            runs=Count("id"),
            successes=Count("id", filter=rollup_success()),
            cost=Sum("cost_usd"),
        )
        .order_by("-cost", field_name)
    )
    if limit:
        rows = rows[:limit]
    return [
        SpendRow(
            row[field_name],
            row["runs"],
            row["successes"],
            row["cost"] or Decimal(0),
            float((row["cost"] or 0) / total) if total else 0.0,
        )
        for row in rows
    ]


def rollup_success() -> Q:
    """A run the rollups count as a success: outcome success, or no outcome and status ok."""
    return Q(outcome=Run.Outcome.SUCCESS) | Q(outcome=Run.Outcome.UNKNOWN, status=Run.Status.OK)


def providers_of(models, since: datetime) -> dict[str, str]:
    """{model: provider} from the LLM spans of the period's most recent runs, else genai-prices.

    Provider is not a rollup dimension, and a model keeps its provider, so a sample of recent
    runs names the provider of every model in use without scanning the span table. A model
    that the sample missed is looked up by name in genai-prices' data (every priced model is
    there); one found in neither is left without a provider and shown as such.
    """
    wanted = {model for model in models if model}
    if not wanted:
        return {}
    recent = Run.objects.filter(started_at__gte=since).order_by("-started_at", "-id")
    run_ids = list(recent.values_list("pk", flat=True)[:PROVIDER_SAMPLE_RUNS])
    pairs = (
        Span.objects.filter(run_id__in=run_ids, model__in=wanted)
        .exclude(provider="")
        .values_list("model", "provider")
        .distinct()
    )
    providers = dict(pairs)
    for model in wanted - providers.keys():
        providers[model] = provider_of_model(model)
    return providers


@dataclass
class DayComparison:
    label: str
    stats: WindowStats
    note: str = ""


def day_comparisons(now: datetime) -> list[DayComparison]:
    """Today so far, yesterday and the same weekday last week, each up to the same time of
    day, so the three read like for like."""
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = now - start
    days = (("Today", 0, "so far"), ("Yesterday", 1, "by this time"))
    days += ((f"Last {timezone.localtime(now):%A}", 7, "by this time"),)
    out = []
    for label, back, note in days:
        day_start = start - timedelta(days=back)
        out.append(
            DayComparison(
                label, rollups.fleet_totals(day_start, day_start + elapsed, now=now), note
            )
        )
    return out


@dataclass
class ExpensiveRun:
    run: Run
    times_average: float | None
    main_model: str = ""
    main_model_share: float = 0.0
    retries: int = 0
    reasons: list[str] = field(default_factory=list)


def top_runs_count(runs_in_period: int) -> int:
    """The top 1 % of runs: at least one when there are any, at most MAX_TOP_RUNS."""
    return min(math.ceil(runs_in_period / 100), MAX_TOP_RUNS)


def costliest_runs(
    since: datetime, until: datetime, runs_in_period: int, average_cost: Decimal | None, agent=None
) -> list[ExpensiveRun]:
    """The top 1 % of runs by cost in [since, until), and what made each expensive."""
    limit = top_runs_count(runs_in_period)
    if not limit:
        return []
    runs = Run.objects.filter(started_at__gte=since, started_at__lt=until).select_related("agent")
    if agent is not None:
        runs = runs.filter(agent=agent)
    top = list(runs.order_by("-cost_usd", "-id")[:limit])
    return explain_costs(top, average_cost)


def explain_costs(runs: list[Run], average_cost: Decimal | None) -> list[ExpensiveRun]:
    """Steps, retries and the model that cost most, for each run (one span query)."""
    steps: dict[int, list[tuple]] = defaultdict(list)
    for row in (
        Span.objects.filter(run_id__in=[run.pk for run in runs], kind__in=["llm", "tool"])
        .order_by("run_id", "started_at")
        .values_list("run_id", "kind", "name", "model", "tool_name", "status", "cost_usd")
    ):
        steps[row[0]].append(row[1:])
    explained = []
    for run in runs:
        model_costs: Counter = Counter()
        failed: set[tuple] = set()
        retries = 0
        for kind, name, model, tool, status, cost in steps[run.pk]:
            call = (kind, model or tool or name)
            if call in failed:
                retries += 1  # the same call again after it failed
                failed.discard(call)
            if status == Span.Status.ERROR:
                failed.add(call)
            if model and cost:
                model_costs[model] += cost
        main_model, main_cost = (model_costs.most_common(1) or [("", 0)])[0]
        times = float(run.cost_usd / average_cost) if average_cost else None
        item = ExpensiveRun(
            run=run,
            times_average=times,
            main_model=main_model,
            main_model_share=float(main_cost / run.cost_usd) if run.cost_usd else 0.0,
            retries=retries,
        )
        item.reasons = _reasons(item)
        explained.append(item)
    return explained


def _reasons(item: ExpensiveRun) -> list[str]:
    run = item.run
    reasons = []
    if run.llm_calls >= 10 or run.span_count >= 30:
        reasons.append(f"{run.llm_calls} LLM calls in {run.span_count} steps")
    if item.retries:
        reasons.append(f"{item.retries} retr{'y' if item.retries == 1 else 'ies'}")
    if item.main_model and item.main_model_share >= 0.5:
        reasons.append(f"{item.main_model_share:.0%} on {item.main_model}")
    if run.input_tokens >= 50_000:
        reasons.append(f"{run.input_tokens:,} input tokens")
    return reasons


def daily_spend(days: int, now: datetime) -> list[tuple[datetime, Decimal]]:
    """Spend per day for the last `days` days including today (from day and hour rollups)."""
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    since = start - timedelta(days=days - 1)
    return [
        (day, stats.cost_usd)
        for day, stats in rollups.series(None, since, now, timedelta(days=1), now=now)
    ]


def month_forecast(now: datetime) -> tuple[forecast.MonthForecast, list]:
    """The month-end forecast and the daily spend it was made from (about five weeks)."""
    local = timezone.localtime(now)
    history_days = max(forecast.TREND_DAYS, local.day) + 1
    days = daily_spend(history_days, now)
    by_date = {timezone.localtime(day).date(): amount for day, amount in days}
    return forecast.forecast_month_end(by_date, local.date()), days
