"""Pages of degradation detection: release comparison, cohorts, failure clusters, drift, PII.

Release comparisons and cohort scans can read many runs, so they run as Celery tasks
(cockpit.degradation_tasks.run_analysis) and the page polls /analyses/<id>/ through htmx,
showing their progress until the result replaces it. Clusters, drift and the PII report read
the run profiles of their window directly.

Everything an agent sent (names, versions, error messages, trait values) is rendered through
Django's autoescaping, and into Plotly labels through cockpit.charts.label.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from cockpit import charts, clusters, cohorts, drift, pii_report, regressions, rollups, scores
from cockpit.degradation_tasks import start_analysis
from cockpit.models import AlertEvent, Analysis, ReleaseCheck
from cockpit.roles import VIEWER, role_required
from cockpit.templatetags.cockpit_format import duration, pct, usd
from traces.models import Agent, ReleaseMarker, Run

TREND_WINDOW = timedelta(days=7)
DEGRADATION_ALERTS = (
    AlertEvent.Kind.RELEASE_REGRESSION,
    AlertEvent.Kind.COHORT_DEGRADATION,
    AlertEvent.Kind.BEHAVIOUR_DRIFT,
)


def _agent(request, name: str) -> Agent:
    """The agent called `name`; ?project= chooses when two projects use the same name."""
    agents = Agent.objects.select_related("project").filter(name=name)
    if request.GET.get("project"):
        agents = agents.filter(project__name=request.GET["project"])
    agent = agents.order_by("project__name").first()
    if agent is None:
        raise Http404("No agent by that name.")
    return agent


def _optional_agent(request) -> Agent | None:
    name = request.GET.get("agent", "")
    return _agent(request, name) if name else None


def _alerts(kind: str, agent: Agent | None = None):
    alerts = AlertEvent.objects.firing().filter(kind=kind).select_related("agent")
    if agent is not None:
        alerts = alerts.filter(agent=agent)
    return list(alerts.order_by("-opened_at")[:20])


# --- Formatting ---------------------------------------------------------------------------------


def show(unit: str, value) -> str:
    """A metric value as a person reads it."""
    if value is None:
        return "—"
    if unit == "pct":
        return pct(value)
    if unit == "ms":
        return duration(value)
    if unit == "usd":
        return usd(f"{value:.8f}")
    if unit == "score":
        return f"{value:.3f}"
    return f"{value:,.1f}"


def show_change(unit: str, a, b) -> str:
    if a is None or b is None:
        return ""
    if unit == "pct":
        return f"{100 * (b - a):+.1f} pts"
    if a:
        return f"{b / a:.2f}×"
    return ""


def _p_value(test: dict) -> str:
    p_value = test.get("p_value")
    if p_value is None:
        return "—"
    return "< 0.0001" if p_value < 0.0001 else f"{p_value:.4f}"


def comparison_rows(result: dict) -> list[dict]:
    rows = []
    for metric in result["metrics"]:
        unit = metric["unit"]
        test = metric["test"]
        row = {
            "key": metric["key"],
            "label": metric["label"],
            "a": show(unit, metric["a"]),
            "b": show(unit, metric["b"]),
            "change": show_change(unit, metric["a"], metric["b"]),
            "n": f"{metric['n_a']:,} · {metric['n_b']:,}",
            "test": test.get("test", ""),
            "p_value": _p_value(test),
            "effect": (
                f"{test['effect_label']} {test['effect']:+.2f}"
                if test.get("effect") is not None
                else "—"
            ),
            "direction": metric["direction"],
            "summary": metric["summary"],
            "detail": metric["detail"],
            "alerting": metric["key"] in result["regressed"],
        }
        if unit == "ms" and metric["extra"].get("p95"):
            p50, p95 = metric["extra"]["p50"], metric["extra"]["p95"]
            row["a"] = f"p50 {show('ms', p50[0])} · p95 {show('ms', p95[0])}"
            row["b"] = f"p50 {show('ms', p50[1])} · p95 {show('ms', p95[1])}"
        if unit == "mix":
            shares = metric["extra"].get("shares", {})
            row["a"] = ", ".join(f"{tool} {pct(s[0])}" for tool, s in list(shares.items())[:4])
            row["b"] = ", ".join(f"{tool} {pct(s[1])}" for tool, s in list(shares.items())[:4])
            row["a"] = row["a"] or "no tool calls"
            row["b"] = row["b"] or "no tool calls"
        rows.append(row)
    return rows


def _finding_rows(result: dict) -> tuple[list[dict], dict]:
    rows, figures = [], {}
    for index, finding in enumerate(result["findings"]):
        unit = (
            "pct"
            if finding["metric"] == "success_rate"
            else ("ms" if finding["metric"] == "latency" else "usd")
        )
        figure_id = f"cohort-trend-{index}"
        trend = finding["trend"]
        layout = charts.base_layout("success %", y_suffix="%")
        layout["height"] = 200
        layout["yaxis"]["range"] = [0, 100]
        layout["yaxis"]["rangemode"] = "normal"
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": finding.get("split", result["split"]),
                "x1": finding.get("split", result["split"]),
                "y0": 0,
                "y1": 1,
                "line": {"color": charts.SLATE, "width": 1, "dash": "dot"},
            }
        ]
        figures[figure_id] = {
            "data": [
                charts.line(
                    f"{result['label']} = {finding['value'] or '(none)'}",
                    trend["x"],
                    trend["cohort"],
                    charts.RED,
                ),
                charts.line("rest of the agent", trend["x"], trend["rest"], charts.BLUE),
            ],
            "layout": layout,
        }
        rows.append(
            {
                "agent": finding["agent"],
                "value": finding["value"] or "(none)",
                "label": finding["label"],
                "before": show(unit, finding["before"]),
                "after": show(unit, finding["after"]),
                "change": show_change(unit, finding["before"], finding["after"]),
                "runs": f"{finding['base_runs']:,} → {finding['recent_runs']:,}",
                "aggregate": _aggregate_change(unit, finding["aggregate_change"]),
                "p_value": _p_value(finding["test"]),
                "test": finding["test"]["test"],
                "effect": f"{finding['test']['effect_label']} {finding['test']['effect']:+.2f}",
                "figure": figure_id,
                "release": finding.get("release", ""),
            }
        )
    return rows, figures


def _aggregate_change(unit: str, change) -> str:
    """How the whole agent moved: points of success rate, or a ratio of medians."""
    if change is None:
        return "—"
    return f"{100 * change:+.1f} pts" if unit == "pct" else f"{change:.2f}×"


def _analysis_context(analysis: Analysis) -> dict:
    context = {"analysis": analysis}
    if analysis.status != Analysis.Status.DONE or not analysis.result:
        return context
    result = analysis.result
    if analysis.kind == Analysis.Kind.RELEASE_COMPARISON:
        context["rows"] = comparison_rows(result)
        context["regressed"] = [row["label"] for row in context["rows"] if row["alerting"]]
    else:
        rows, figures = _finding_rows(result)
        context["findings"] = rows
        context["figure_scripts"] = charts.figure_scripts(figures)
    context["result"] = result
    context["since"] = parse_datetime(result["since"]) if result.get("since") else None
    context["until"] = parse_datetime(result["until"]) if result.get("until") else None
    context["split"] = parse_datetime(result["split"]) if result.get("split") else None
    return context


@require_GET
@role_required(VIEWER)
def analysis_status(request, pk: int):
    """The progress of an analysis, or its result once done (polled by htmx)."""
    analysis = get_object_or_404(Analysis, pk=pk)
    return render(request, "cockpit/degradation/_analysis.html", _analysis_context(analysis))


# --- Fragments on the run and agent pages ------------------------------------------------------

SCORE_WINDOW = timedelta(days=30)


@require_GET
@role_required(VIEWER)
def run_scores(request, pk: int):
    """The scores of one run, for the run page (loaded by htmx after the page)."""
    run = get_object_or_404(Run, pk=pk)
    context = {"scores": scores.run_scores(run)}
    return render(request, "cockpit/degradation/_run_scores.html", context)


@require_GET
@role_required(VIEWER)
def agent_quality(request, pk: int):
    """An agent's mean scores per version from the daily rollups, for the agent page."""
    agent = get_object_or_404(Agent, pk=pk)
    now = timezone.now()
    means = scores.version_means(agent.pk, since=now - SCORE_WINDOW, until=now)
    return render(request, "cockpit/degradation/_agent_score_means.html", {"means": means})


# --- Release comparison -------------------------------------------------------------------------


def _trend_figures(agent: Agent, now: datetime) -> dict:
    since = now - TREND_WINDOW
    points = rollups.series(agent.pk, since, now, timedelta(hours=3), now=now)
    xs = [at for at, _ in points]
    markers = [
        charts.Marker(r.at, r.version)
        for r in ReleaseMarker.objects.filter(agent=agent, at__gte=since, at__lte=now)
    ]
    outcomes = charts.base_layout("% of runs", markers=markers, y_suffix="%")
    outcomes["yaxis"].update(range=[0, 100], rangemode="normal")
    latency = charts.base_layout("ms", markers=markers)
    for layout in (outcomes, latency):
        layout["xaxis"]["range"] = [since, now]
    return {
        "release-trend-outcomes": {
            "data": [
                charts.line(
                    "success",
                    xs,
                    [
                        None if s.success_rate is None else round(100 * s.success_rate, 2)
                        for _, s in points
                    ],
                    charts.GREEN,
                ),
                charts.line(
                    "errors",
                    xs,
                    [
                        None if s.error_rate is None else round(100 * s.error_rate, 2)
                        for _, s in points
                    ],
                    charts.RED,
                ),
            ],
            "layout": outcomes,
        },
        "release-trend-latency": {
            "data": [
                charts.line("p50", xs, [s.p50 for _, s in points], charts.BLUE),
                charts.line("p95", xs, [s.p95 for _, s in points], charts.AMBER),
            ],
            "layout": latency,
        },
    }


@require_GET
@role_required(VIEWER)
def release_comparison(request, name: str):
    agent = _agent(request, name)
    now = timezone.now()
    default_a, default_b = regressions.default_versions(agent)
    a = request.GET.get("a", "").strip() or default_a or ""
    b = request.GET.get("b", "").strip() or default_b or ""
    problem = ""
    analysis = None
    if not a or not b:
        problem = "This agent has fewer than two versions to compare yet."
    elif a == b:
        problem = "Choose two different versions."
    elif max(len(a), len(b)) > 100:
        problem = "A version is at most 100 characters."
    else:
        analysis = start_analysis(
            Analysis.Kind.RELEASE_COMPARISON,
            regressions.comparison_key(agent, a, b),
            {"agent_id": agent.pk, "a": a, "b": b},
            fresh=request.GET.get("fresh") == "1",
        )
    releases = list(ReleaseMarker.objects.filter(agent=agent).order_by("-at")[:20])
    check = (
        ReleaseCheck.objects.filter(release__agent=agent, release__version=b).first() if b else None
    )
    figures = _trend_figures(agent, now)
    context = {
        "agent": agent,
        "a": a,
        "b": b,
        "versions": _version_choices(agent, releases, a, b),
        "problem": problem,
        "check": check,
        "release_rows": [
            (release, releases[i + 1].version if i + 1 < len(releases) else None)
            for i, release in enumerate(releases)
        ],
        "alerts": _alerts(AlertEvent.Kind.RELEASE_REGRESSION, agent),
        "figure_scripts": charts.figure_scripts(figures),
        "project_query": f"&project={agent.project.name}" if request.GET.get("project") else "",
        **(_analysis_context(analysis) if analysis else {}),
    }
    return render(request, "cockpit/degradation/releases.html", context)


def _version_choices(agent: Agent, releases, a: str, b: str) -> list[str]:
    versions = [r.version for r in releases]
    for extra in (agent.current_version, a, b):
        if extra and extra not in versions:
            versions.append(extra)
    return versions


# --- Cohorts ------------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def cohorts_page(request):
    agent = _optional_agent(request)
    keys = cohorts.keys_for(agent)
    key = request.GET.get("key") or "task_type"
    problem = ""
    analysis = None
    if not cohorts.valid_key(key):
        problem = "Choose an attribute from the list."
    else:
        analysis = start_analysis(
            Analysis.Kind.COHORT_SCAN,
            cohorts.scan_key(agent, key),
            {"agent_id": agent.pk if agent else None, "key": key},
            fresh=request.GET.get("fresh") == "1",
        )
    if key not in dict(keys) and cohorts.valid_key(key):
        keys.append((key, key.removeprefix("trait:")))
    context = {
        "agent": agent,
        "agents": Agent.objects.order_by("name").values_list("name", flat=True),
        "keys": keys,
        "key": key,
        "problem": problem,
        "alerts": _alerts(AlertEvent.Kind.COHORT_DEGRADATION, agent),
        **(_analysis_context(analysis) if analysis else {}),
    }
    return render(request, "cockpit/degradation/cohorts.html", context)


# --- Failure clusters ---------------------------------------------------------------------------


def _clusters_figure(found: list[clusters.Cluster]) -> dict:
    data = []
    for index, cluster in enumerate(found[:6]):
        data.append(
            {
                "type": "bar",
                "name": charts.label(cluster.label[:60]),
                "x": [at for at, _ in cluster.trend],
                "y": [n for _, n in cluster.trend],
                "marker": {"color": charts.PALETTE[index % len(charts.PALETTE)]},
            }
        )
    layout = charts.base_layout("failed runs")
    layout["barmode"] = "stack"
    layout["height"] = 260
    layout["legend"] = {"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 10}}
    layout["margin"]["r"] = 320
    return {"data": data, "layout": layout}


def _sparkline(trend) -> list[int]:
    peak = max((n for _, n in trend), default=0)
    return [round(100 * n / peak) if peak else 0 for _, n in trend][-30:]


@require_GET
@role_required(VIEWER)
def clusters_page(request):
    agent = _optional_agent(request)
    window = request.GET.get("window", clusters.DEFAULT_WINDOW)
    if window not in clusters.WINDOWS:
        window = clusters.DEFAULT_WINDOW
    since, until = clusters.window_for(window)
    found = clusters.failure_clusters(since, until, agent=agent)
    for cluster in found:
        cluster.spark = _sparkline(cluster.trend)
    context = {
        "agent": agent,
        "agents": Agent.objects.order_by("name").values_list("name", flat=True),
        "window": window,
        "windows": clusters.WINDOWS,
        "clusters": found,
        "since": since,
        "figure_scripts": charts.figure_scripts({"clusters-trend": _clusters_figure(found)}),
    }
    return render(request, "cockpit/degradation/clusters.html", context)


# --- Drift --------------------------------------------------------------------------------------


def _drift_figures(result: drift.AgentDrift) -> dict:
    figures = {}
    for dimension in result.dimensions:
        if dimension.psi is None:
            continue
        layout = charts.base_layout(
            "share of runs" if dimension.key != "tools" else "share of calls"
        )
        layout["xaxis"] = {"type": "category", "linecolor": "#cbd5e1"}
        layout["yaxis"]["tickformat"] = ".0%"
        layout["height"] = 220
        layout["hovermode"] = "x"
        labels = [charts.label(str(b)) for b in dimension.bins]
        figures[f"drift-{dimension.key}"] = {
            "data": [
                {
                    "type": "bar",
                    "name": "baseline",
                    "x": labels,
                    "y": dimension.before,
                    "marker": {"color": "#94a3b8"},
                },
                {
                    "type": "bar",
                    "name": "recent",
                    "x": labels,
                    "y": dimension.after,
                    "marker": {"color": charts.BLUE},
                },
            ],  # fmt: skip
            "layout": layout,
        }
    return figures


@require_GET
@role_required(VIEWER)
def drift_page(request):
    agent = _optional_agent(request)
    now = timezone.now()
    context = {"agent": agent, "alerts": _alerts(AlertEvent.Kind.BEHAVIOUR_DRIFT, agent)}
    if agent is not None:
        result = drift.agent_drift(agent, now=now)
        figures = _drift_figures(result)
        context.update(result=result, figure_scripts=charts.figure_scripts(figures))
    else:
        context["results"] = drift.fleet_drift(now=now)
    context["thresholds"] = {"moderate": drift.MODERATE, "alert": drift.DRIFT_ALERT}
    return render(request, "cockpit/degradation/drift.html", context)


# --- PII report ---------------------------------------------------------------------------------


def _pii_figure(report: pii_report.PiiReport) -> dict:
    data = [
        {
            "type": "bar",
            "name": pii_report.label(kind),
            "x": report.days,
            "y": report.per_day.get(kind, []),
            "marker": {"color": charts.PALETTE[index % len(charts.PALETTE)]},
        }
        for index, kind in enumerate(report.types)
    ]
    layout = charts.base_layout("values found")
    layout["barmode"] = "stack"
    layout["xaxis"]["dtick"] = 86_400_000
    return {"data": data, "layout": layout}


@require_GET
@role_required(VIEWER)
def pii_page(request):
    agent = _optional_agent(request)
    report = pii_report.report(agent=agent)
    context = {
        "agent": agent,
        "agents": Agent.objects.order_by("name").values_list("name", flat=True),
        "report": report,
        "types": [(kind, pii_report.plural(kind), report.totals[kind]) for kind in report.types],
        "agent_rows": [
            {
                "name": row["name"],
                "runs": row["runs"],
                "types": ", ".join(
                    f"{pii_report.label(k)} × {n}" for k, n in sorted(row["types"].items())
                ),
            }
            for row in report.agents
        ],
        "figure_scripts": charts.figure_scripts({"pii-per-day": _pii_figure(report)}),
    }
    return render(request, "cockpit/degradation/pii.html", context)
