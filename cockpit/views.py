from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Max, Q, Sum
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from cockpit.roles import VIEWER, role_required
from traces.models import Agent, Run
from traces.views import format_duration

FLEET_WINDOW = timedelta(hours=1)


@require_GET
def healthz(request):
    """Liveness and readiness for load balancers and docker compose: checks the database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok"})


class Percentile(Aggregate):
    """PostgreSQL's exact percentile_cont, an ordered-set aggregate (interpolates linearly)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The same interpolated percentile as percentile_cont, for databases without it."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def percentiles_in_database() -> bool:
    return connection.vendor == "postgresql"


# A run succeeded when the agent said so; without an explicit outcome, when its status is ok.
SUCCEEDED = Q(outcome=Run.Outcome.SUCCESS) | Q(outcome=Run.Outcome.UNKNOWN, status=Run.Status.OK)


@dataclass
class WindowStats:
    """One agent's, or the whole fleet's, runs in the fleet window."""

    runs: int = 0
    errors: int = 0
    succeeded: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_known: bool = True
    last_run_at: object = None

    @property
    def error_pct(self) -> float | None:
        return 100 * self.errors / self.runs if self.runs else None

    @property
    def success_pct(self) -> float | None:
        return 100 * self.succeeded / self.runs if self.runs else None

    @property
    def p50_display(self) -> str:
        return format_duration(self.p50_ms)

    @property
    def p95_display(self) -> str:
        return format_duration(self.p95_ms)


def _window_stats(runs, group_by: str | None) -> dict:
    """Aggregate `runs` (grouped by the `group_by` field, or as one group keyed None).

    One query on PostgreSQL; databases without percentile_cont need a second for durations.
    """
    aggregates = {
        "runs": Count("id"),
        "errors": Count("id", filter=Q(status=Run.Status.ERROR)),
        "succeeded": Count("id", filter=SUCCEEDED),
        "tokens": Sum(F("input_tokens") + F("output_tokens")),
        "cost_usd": Sum("cost_usd"),
        "unknown_costs": Count("id", filter=Q(cost_known=False)),
        "last_run_at": Max("started_at"),
    }
    in_db = percentiles_in_database()
    if in_db:
        aggregates["p50_ms"] = Percentile("duration_ms", 0.5)
        aggregates["p95_ms"] = Percentile("duration_ms", 0.95)
    if group_by:
        rows = runs.values(group_by).order_by().annotate(**aggregates)
    else:
        rows = [runs.aggregate(**aggregates)]
    stats = {}
    for row in rows:
        key = row[group_by] if group_by else None
        stats[key] = WindowStats(
            runs=row["runs"],
            errors=row["errors"],
            succeeded=row["succeeded"],
            p50_ms=row.get("p50_ms"),
            p95_ms=row.get("p95_ms"),
            tokens=row["tokens"] or 0,
            cost_usd=row["cost_usd"] or Decimal(0),
            cost_known=not row["unknown_costs"],
            last_run_at=row["last_run_at"],
        )
    if not in_db:
        durations: dict = {}
        fields = (group_by, "duration_ms") if group_by else ("duration_ms",)
        for values in runs.order_by("duration_ms").values_list(*fields):
            durations.setdefault(values[0] if group_by else None, []).append(values[-1])
        for key, values in durations.items():
            if key in stats:
                stats[key].p50_ms = percentile(values, 0.5)
                stats[key].p95_ms = percentile(values, 0.95)
    return stats


def fleet_snapshot() -> dict:
    """Every agent with its last hour, and the fleet's totals: three queries on PostgreSQL."""
    now = timezone.now()
    since = now - FLEET_WINDOW
    agents = list(Agent.objects.select_related("project").order_by("project__name", "name"))
    recent = Run.objects.filter(started_at__gte=since, agent__isnull=False)
    per_agent = _window_stats(recent, "agent_id") if agents else {}
    totals = _window_stats(recent, None).get(None, WindowStats()) if agents else WindowStats()
    rows = [(agent, per_agent.get(agent.pk, WindowStats())) for agent in agents]
    return {
        "rows": rows,
        "totals": totals,
        "agents_live": sum(1 for _, stats in rows if stats.runs),
        "now": now,
    }


@require_GET
@role_required(VIEWER)
def fleet(request):
    context = fleet_snapshot()
    context["otlp_endpoint"] = request.build_absolute_uri("/").rstrip("/")
    template = "cockpit/_fleet_table.html" if request.htmx else "cockpit/fleet.html"
    response = render(request, template, context)
    # The same address answers with a page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response
