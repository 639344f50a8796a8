"""The cockpit's pages: the fleet, one agent, the cost explorer, and the intervention actions.

Dashboards read rollups (cockpit.rollups), SLO and budget statuses (cockpit.slo,
cockpit.budgets); interventions go through cockpit.interventions' do_* functions, which audit
and broadcast. Run rows are read only where rollups cannot answer: the slowest and costliest
runs, and per-user figures.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import views as auth_views
from django.db import connection
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from cockpit import charts, costs, live_tiles, rollups
from cockpit.budgets import all_budget_statuses, budget_status
from cockpit.csv_export import Echo, csv_cell
from cockpit.interventions import agent_interventions, can_intervene
from cockpit.models import AgentControl, Rollup
from cockpit.roles import ADMIN, COMMANDER, OPERATOR, REVIEWER, VIEWER, role_required, user_roles
from cockpit.slo import recent_alerts, slo_status
from traces.models import Agent, ReleaseMarker, Run, Span


@require_GET
def healthz(request):
    """Liveness and readiness for load balancers and docker compose: checks the database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok"})


# --- Fleet ------------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def fleet(request):
    context = live_tiles.fleet_snapshot()
    context["otlp_endpoint"] = request.build_absolute_uri("/").rstrip("/")
    # htmx (the polling fallback, a live refresh) gets the body only; people get the page.
    template = "cockpit/_fleet_body.html" if request.htmx else "cockpit/fleet.html"
    response = render(request, template, context)
    # The same address answers with a page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- One agent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartWindow:
    key: str
    label: str
    length: timedelta
    step: timedelta
    step_label: str


WINDOWS = {
    window.key: window
    for window in (
        ChartWindow("1h", "hour", timedelta(hours=1), timedelta(minutes=1), "1-minute"),
        ChartWindow("24h", "24 hours", timedelta(hours=24), timedelta(minutes=15), "15-minute"),
        ChartWindow("7d", "7 days", timedelta(days=7), timedelta(hours=1), "1-hour"),
        ChartWindow("30d", "30 days", timedelta(days=30), timedelta(hours=6), "6-hour"),
    )
}
DEFAULT_WINDOW = "24h"
# Tool calls are not a rollup dimension: the tools table reads spans of the agent's runs, so
# it looks at most this far back, and at no more than the latest TOOLS_RUNS runs: a sample
# whose cost stays flat however busy the agent is.
TOOLS_WINDOW = timedelta(hours=24)
TOOLS_RUNS = 500
SLOWEST_RUNS = 10
BREAKDOWN_ROWS = 8
# A user whose first run with the agent is this recent counts as new.
NEW_USER_AGE = timedelta(days=7)


def _get_agent(request, name: str) -> Agent:
    """The agent called `name`; ?project= chooses when two projects use the same name."""
    agents = Agent.objects.select_related("project").filter(name=name)
    project = request.GET.get("project")
    if project:
        agents = agents.filter(project__name=project)
    agent = agents.order_by("project__name").first()
    if agent is None:
        raise Http404("No agent by that name.")
    return agent


def _window(request) -> ChartWindow:
    return WINDOWS.get(request.GET.get("window", ""), WINDOWS[DEFAULT_WINDOW])


def agent_figures(agent: Agent, window: ChartWindow, now: datetime) -> dict[str, dict]:
    """The agent page's charts for a window: two rollup reads and the releases in it."""
    since = now - window.length
    points = [
        charts.Point(
            at=at,
            runs=stats.runs,
            succeeded=stats.successes,
            errors=stats.error_runs,
            p50_ms=stats.p50,
            p95_ms=stats.p95,
            p99_ms=stats.p99,
            cost_usd=float(stats.cost_usd),
        )
        for at, stats in rollups.series(agent.pk, since, now, window.step, now=now)
    ]
    by_model = rollups.breakdown_series(
        agent.pk, Rollup.Dim.MODEL, since, now, window.step, latency=False, now=now
    )
    tokens = {
        model or "unknown model": [(at, s.input_tokens + s.output_tokens) for at, s in series]
        for model, series in by_model.items()
    }
    markers = [
        charts.Marker(release.at, release.version)
        for release in ReleaseMarker.objects.filter(agent=agent, at__gte=since, at__lte=now)
    ]
    return charts.agent_figures(
        points,
        tokens,
        markers,
        bucket_minutes=int(window.step.total_seconds() // 60),
        x_range=(since, now),
    )


@dataclass
class BreakdownRow:
    value: str
    stats: object

    @property
    def share_label(self) -> str:
        return self.value or "none"


def _breakdown(stats: dict[str, rollups.WindowStats]) -> list[BreakdownRow]:
    rows = [BreakdownRow(value, s) for value, s in stats.items() if s.runs]
    return sorted(rows, key=lambda row: -row.stats.runs)[:BREAKDOWN_ROWS]


BREAKDOWN_DIMS = (Rollup.Dim.MODEL, Rollup.Dim.TASK_TYPE, Rollup.Dim.VERSION)


def _tool_breakdown(agent: Agent, since: datetime, now: datetime) -> list[dict]:
    """Calls, errors and mean latency per tool, from the spans of the latest runs.

    Two queries: the run ids first, so that their spans are read through the span index by run
    (as a subquery the planner may scan every span instead, tens of ms on a busy store)."""
    run_ids = list(
        Run.objects.filter(
            agent=agent, started_at__gte=max(since, now - TOOLS_WINDOW), started_at__lt=now
        )
        .order_by("-started_at")
        .values_list("pk", flat=True)[:TOOLS_RUNS]
    )
    if not run_ids:
        return []
    rows = (
        Span.objects.filter(run_id__in=run_ids, kind=Span.Kind.TOOL)
        .values("tool_name")
        .order_by()
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=Q(status=Span.Status.ERROR)),
            total_ms=Sum("duration_ms"),
        )
        .order_by("-calls")[:BREAKDOWN_ROWS]
    )
    return [
        {
            "tool": row["tool_name"] or "unnamed tool",
            "calls": row["calls"],
            "error_rate": row["errors"] / row["calls"] if row["calls"] else None,
            "mean_ms": (row["total_ms"] or 0) / row["calls"] if row["calls"] else None,
        }
        for row in rows
    ]


def _user_cohorts(agent: Agent, since: datetime, now: datetime) -> list[dict]:
    """Runs by user cohort: new users (first run with the agent in the last week), returning
    users, and runs without a user. Two queries over the window's runs."""
    runs = Run.objects.filter(agent=agent, started_at__gte=since, started_at__lt=now)
    per_user = list(
        runs.values("user_id")
        .order_by()
        .annotate(
            runs=Count("id"),
            successes=Count("id", filter=costs.rollup_success()),
            errors=Count("id", filter=Q(status=Run.Status.ERROR)),
            cost=Sum("cost_usd"),
        )
    )
    users = [row["user_id"] for row in per_user if row["user_id"]]
    returning = set(
        Run.objects.filter(
            agent=agent, user_id__in=users, started_at__lt=now - NEW_USER_AGE
        ).values_list("user_id", flat=True)
    )
    cohorts: dict[str, dict] = {}
    for row in per_user:
        if not row["user_id"]:
            name = "No user"
        elif row["user_id"] in returning:
            name = "Returning users"
        else:
            name = "New users (first run < 7 d)"
        cohort = cohorts.setdefault(
            name, {"cohort": name, "users": 0, "runs": 0, "successes": 0, "errors": 0, "cost": 0}
        )
        cohort["users"] += 1 if row["user_id"] else 0
        for key in ("runs", "successes", "errors"):
            cohort[key] += row[key]
        cohort["cost"] += row["cost"] or 0
    for cohort in cohorts.values():
        cohort["success_rate"] = cohort["successes"] / cohort["runs"] if cohort["runs"] else None
        cohort["error_rate"] = cohort["errors"] / cohort["runs"] if cohort["runs"] else None
    return sorted(cohorts.values(), key=lambda c: -c["runs"])


def _control_context(request, agent: Agent) -> dict:
    try:
        control = agent.control
    except AgentControl.DoesNotExist:
        control = AgentControl(agent=agent)
    return {
        "agent": agent,
        "control": control,
        "can_intervene": can_intervene(request.user),
        "interventions": list(agent_interventions(agent, limit=25)),
        "query": _agent_query(request),
    }


def _agent_query(request) -> str:
    project = request.GET.get("project")
    return f"?project={project}" if project else ""


@require_GET
@role_required(VIEWER)
def agent_page(request, name):
    agent = _get_agent(request, name)
    window = _window(request)
    now = timezone.now()
    since = now - window.length
    part = request.GET.get("part")
    # htmx re-fetches of one part after a live refresh: render only that fragment.
    if request.htmx and part == "control":
        return render(request, "cockpit/_agent_control.html", _control_context(request, agent))
    summary = rollups.agent_window([agent.pk], since, now, steps=True, now=now)[agent.pk]
    if request.htmx and part == "summary":
        return render(
            request,
            "cockpit/_agent_summary.html",
            {"agent": agent, "summary": summary, "window": window, "now": now},
        )
    figures = agent_figures(agent, window, now)
    slowest = list(
        Run.objects.filter(agent=agent, started_at__gte=since).order_by("-duration_ms", "-id")[
            :SLOWEST_RUNS
        ]
    )
    costliest = costs.costliest_runs(since, now, summary.runs, summary.cost_per_run, agent=agent)
    tables = rollups.breakdowns(agent.pk, BREAKDOWN_DIMS, since, now, now=now)
    context = {
        "agent": agent,
        "window": window,
        "windows": WINDOWS.values(),
        "now": now,
        "summary": summary,
        "llm_p95": summary.quantiles([0.95], "llm")[0],
        "tool_p95": summary.quantiles([0.95], "tool")[0],
        "figure_scripts": charts.figure_scripts(figures),
        "chart_ids": list(figures),
        "charts_src": reverse("agent-charts", args=[agent.name])
        + f"?window={window.key}"
        + (f"&project={request.GET['project']}" if request.GET.get("project") else ""),
        "by_model": _breakdown(tables[Rollup.Dim.MODEL]),
        "by_task": _breakdown(tables[Rollup.Dim.TASK_TYPE]),
        "by_version": _breakdown(tables[Rollup.Dim.VERSION]),
        "tools": _tool_breakdown(agent, since, now),
        "tools_label": (window.label if window.length <= TOOLS_WINDOW else "24 hours")
        + f", up to {TOOLS_RUNS} runs",
        "cohorts": _user_cohorts(agent, since, now),
        "slowest": slowest,
        "costliest": costliest,
        "slos": slo_status(agent, now=now),
        "budgets": budget_status(agent, now=now),
        "alerts": list(recent_alerts(agent, limit=10)),
        "releases": list(ReleaseMarker.objects.filter(agent=agent).order_by("-at")[:5]),
        **_control_context(request, agent),
    }
    return render(request, "cockpit/agent.html", context)


@require_GET
@role_required(VIEWER)
def agent_charts(request, name):
    """The agent page's figures as JSON, for the live refresh (static/cockpit/charts.js)."""
    agent = _get_agent(request, name)
    figures = agent_figures(agent, _window(request), timezone.now())
    return HttpResponse(charts.figures_json(figures.items()), content_type="application/json")


# --- Cost explorer --------------------------------------------------------------------------------


def _period(request) -> str:
    period = request.GET.get("period", "")
    return period if period in costs.PERIODS else costs.DEFAULT_PERIOD


@require_GET
@role_required(VIEWER)
def cost_explorer(request):
    now = timezone.now()
    period = _period(request)
    since, until = costs.period_bounds(period, now)
    totals = rollups.fleet_totals(since, until, now=now)
    month, days = costs.month_forecast(now)
    last_30 = days[-30:]
    breakdowns = [
        (
            key,
            costs.DIMENSION_LABELS[key],
            costs.spend_by(key, since, until, now=now)[: costs.TOP_ROWS],
        )
        for key in costs.DIMENSIONS
    ]
    figure = charts.daily_spend_figure([(day, float(amount)) for day, amount in last_30])
    context = {
        "period": period,
        "periods": costs.PERIODS,
        "since": since,
        "now": now,
        "totals": totals,
        "comparisons": costs.day_comparisons(now),
        "forecast": month,
        "breakdowns": breakdowns,
        "costliest": costs.costliest_runs(since, until, totals.runs, totals.cost_per_run),
        "budgets": all_budget_statuses(now=now),
        "figure_scripts": charts.figure_scripts({"chart-daily-spend": figure}),
    }
    return render(request, "cockpit/costs.html", context)


CSV_RUN_FIELDS = (
    "trace_id", "agent", "started_at", "status", "outcome", "task_type", "team", "user_id",
    "conversation_id", "span_count", "llm_calls", "tool_calls", "input_tokens", "output_tokens",
    "cost_usd", "cost_known",
)  # fmt: skip


def _spend_csv_rows(dimension: str, since, until, now):
    yield [dimension, "runs", "successes", "cost_usd", "cost_per_run", "cost_per_success"]
    if dimension in costs.RUN_DIMENSIONS:
        total = rollups.fleet_totals(since, until, now=now).cost_usd
        rows = costs.spend_by_run_field(costs.RUN_DIMENSIONS[dimension], since, until, total, None)
    else:
        rows = costs.spend_by(dimension, since, until, now=now)
    for row in rows:
        yield [
            csv_cell(row.value),
            row.runs,
            row.successes,
            row.cost_usd,
            row.cost_per_run if row.cost_per_run is not None else "",
            row.cost_per_success if row.cost_per_success is not None else "",
        ]


def _run_csv_rows(since, until):
    yield list(CSV_RUN_FIELDS)
    runs = (
        Run.objects.filter(started_at__gte=since, started_at__lt=until)
        .order_by("started_at", "id")
        .values_list(
            "trace_id",
            "agent__name",
            "started_at",
            "status",
            "outcome",
            "task_type",
            "team",
            "user_id",
            "conversation_id",
            "span_count",
            "llm_calls",
            "tool_calls",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "cost_known",
        )  # fmt: skip
    )
    for row in runs.iterator(chunk_size=2000):
        yield [csv_cell(value) for value in row]


@require_GET
@role_required(VIEWER)
def cost_csv(request):
    """Spend by one dimension (?by=agent|team|…), or every run with its cost (?by=run)."""
    now = timezone.now()
    period = _period(request)
    since, until = costs.period_bounds(period, now)
    by = request.GET.get("by", "agent")
    if by == "run":
        rows = _run_csv_rows(since, until)
    elif by in costs.DIMENSIONS:
        rows = _spend_csv_rows(by, since, until, now)
    else:
        return HttpResponse("by must be run or one of: " + ", ".join(costs.DIMENSIONS), status=400)
    writer = csv.writer(Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    filename = f"cockpit-spend-by-{by}-{period}-{now:%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class LoginView(auth_views.LoginView):
    """Log in; a person who only reviews lands on the approval queue, everyone else on the fleet."""

    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        roles = user_roles(self.request.user)
        if REVIEWER in roles and not roles & {OPERATOR, COMMANDER, ADMIN}:
            return reverse("approval-queue")
        return super().get_default_redirect_url()
