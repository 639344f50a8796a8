"""Scores: evaluation and user-feedback values on runs, their daily rollups, and score SLOs.

A score arrives from POST /api/v1/scores (cockpit.scores_api) or as a span attribute
`cockpit.score.<name>` (read by traces.normalise, stored here by store_span_scores from
traces.ingest, in the ingest transaction). A score may name a trace whose run has not arrived
yet — user feedback often beats a batching exporter — and waits, unlinked, until
link_pending finds the run.

rollup_pass (Celery, every minute) rebuilds the ScoreDaily rows of every (agent, day) whose
scores changed since its watermark: count, sum and sum of squares of numeric and boolean scores
(true counts 1), and category counts. Pages read those rows for means per agent and version.

Score SLOs (Slo.Kind.SCORE_MEAN, "mean helpfulness ≥ 0.8") read scores of 0..1 as good
fractions: slo_window_counts gives cockpit.slo a WindowCounts per window whose runs are the
scores counted and whose successes are their sum, so the bad fraction is 1 − mean and burn
rates and error budgets work as for a success-rate SLO.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta

from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from cockpit.models import Score, ScoreDaily
from traces.models import Run

SCORE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
CATEGORY_MAX = 100
COMMENT_MAX = 2000
ROLLUP_WATERMARK = "scores"
# Scores rolled up per pass; a backlog is worked off over several passes.
ROLLUP_BATCH = 20_000
# A score still waiting for its run after this long names a trace that never came: it stays
# stored (and listed nowhere) but linking stops looking for it.
PENDING_FOR = timedelta(days=2)


# --- Values ------------------------------------------------------------------------------------


def kind_of(value) -> str | None:
    """The Score.Kind of a JSON or attribute value, None for anything a score cannot be."""
    if isinstance(value, bool):
        return Score.Kind.BOOLEAN
    if isinstance(value, int | float):
        return Score.Kind.NUMERIC if math.isfinite(value) else None
    if isinstance(value, str):
        return Score.Kind.CATEGORICAL if 0 < len(value) <= CATEGORY_MAX else None
    return None


def value_fields(kind: str, value) -> dict:
    """The Score columns holding `value` of `kind`."""
    if kind == Score.Kind.BOOLEAN:
        return {"value_bool": bool(value)}
    if kind == Score.Kind.NUMERIC:
        return {"value_number": float(value)}
    return {"value_category": str(value)[:CATEGORY_MAX]}


def _run_fields(run: Run) -> dict:
    return {
        "run_id": run.pk,
        "agent_id": run.agent_id,
        "version": run.version,
        "run_started_at": run.started_at,
    }


# --- Writing -----------------------------------------------------------------------------------


def record_score(
    project, *, trace_id: str, run: Run | None, name: str, kind: str, value, source, comment=""
) -> Score:
    """Store one score from the API; `run` None leaves it waiting for its trace."""
    now = timezone.now()
    fields = _run_fields(run) if run is not None else {}
    return Score.objects.create(
        project=project,
        trace_id=trace_id,
        name=name,
        kind=kind,
        source=source,
        comment=comment[:COMMENT_MAX],
        created_at=now,
        updated_at=now,
        **fields,
        **value_fields(kind, value),
    )


def store_span_scores(project, spans) -> int:
    """Store the cockpit.score.<name> attributes of a batch's spans (traces.ingest calls this in
    its transaction, only when some span has scores). Idempotent: a re-sent span's scores are
    stored once. Returns how many scores were read."""
    wanted = [span for span in spans if span.scores]
    runs = {
        run.trace_id: run
        for run in Run.objects.filter(
            project=project, trace_id__in={span.trace_id for span in wanted}
        ).only("id", "trace_id", "agent_id", "version", "started_at")
    }
    now = timezone.now()
    rows = []
    for span in wanted:
        run = runs.get(span.trace_id)
        if run is None:
            continue  # cannot happen inside ingest's transaction; nothing to attach to
        for name, value in span.scores.items():
            kind = kind_of(value)
            if kind is None or not SCORE_NAME.match(name):
                continue
            rows.append(
                Score(
                    project=project,
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    name=name,
                    kind=kind,
                    source=Score.Source.EVALUATOR,
                    created_at=now,
                    updated_at=now,
                    **_run_fields(run),
                    **value_fields(kind, value),
                )
            )
    Score.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def link_pending(*, now: datetime | None = None) -> int:
    """Attach scores that arrived before their run to the run, now that it is stored: one
    UPDATE per run found, for all of its waiting scores."""
    now = now or timezone.now()
    pending = list(
        Score.objects.filter(run__isnull=True, created_at__gte=now - PENDING_FOR).values_list(
            "pk", "project_id", "trace_id"
        )[:ROLLUP_BATCH]
    )
    if not pending:
        return 0
    waiting: dict[tuple[int, str], list[int]] = {}
    for pk, project_id, trace_id in pending:
        waiting.setdefault((project_id, trace_id), []).append(pk)
    runs = Run.objects.filter(
        project_id__in={project_id for project_id, _ in waiting},
        trace_id__in={trace_id for _, trace_id in waiting},
    ).only("id", "project_id", "trace_id", "agent_id", "version", "started_at")
    linked = 0
    for run in runs:
        pks = waiting.get((run.project_id, run.trace_id))
        if pks:
            linked += Score.objects.filter(pk__in=pks, run__isnull=True).update(
                updated_at=now, **_run_fields(run)
            )
    return linked


# --- Rollups -----------------------------------------------------------------------------------


def rollup_pass(*, now: datetime | None = None) -> int:
    """Rebuild the ScoreDaily rows of every (agent, day) whose scores changed since the
    watermark. Returns the number of (agent, day) groups rebuilt. Idempotent; a second pass
    running at the same time finds the watermark locked and returns 0."""
    from cockpit.rollups import changed_rows_pass

    now = now or timezone.now()
    link_pending(now=now)
    groups: set = set()

    def rebuild(score_ids: list[int]) -> None:
        found = {
            (agent_id, started.date())
            for agent_id, started in Score.objects.filter(pk__in=score_ids).values_list(
                "agent_id", "run_started_at"
            )
            if started
        } - groups
        for agent_id, day in sorted(found):
            _rebuild_day(agent_id, day, now)
        groups.update(found)

    changed_rows_pass(
        ROLLUP_WATERMARK, Score.objects.filter(agent__isnull=False), ROLLUP_BATCH, rebuild, now
    )
    return len(groups)


def _rebuild_day(agent_id: int, day, now: datetime) -> None:
    # Days are UTC days, as run_started_at.date() is in pass().
    start = datetime.combine(day, time.min, tzinfo=UTC)
    scores = Score.objects.filter(
        agent_id=agent_id, run_started_at__gte=start, run_started_at__lt=start + timedelta(days=1)
    )
    rows: dict[tuple[str, str], ScoreDaily] = {}

    def row(name: str, version: str) -> ScoreDaily:
        key = (name, version)
        if key not in rows:
            rows[key] = ScoreDaily(
                agent_id=agent_id, name=name, version=version, day=day, computed_at=now
            )
        return rows[key]

    numbers = scores.exclude(kind=Score.Kind.CATEGORICAL).annotate(number=_number_expression())
    for group in (
        numbers.values("name", "version")
        .order_by()
        .annotate(n=Count("id"), total=Sum("number"), squares=Sum(F("number") * F("number")))
    ):
        target = row(group["name"], group["version"])
        target.count += group["n"]
        target.numeric_count = group["n"]
        target.total = group["total"] or 0.0
        target.total_squares = group["squares"] or 0.0
    for group in (
        scores.filter(kind=Score.Kind.CATEGORICAL)
        .values("name", "version", "value_category")
        .order_by()
        .annotate(n=Count("id"))
    ):
        target = row(group["name"], group["version"])
        target.count += group["n"]
        target.categories[group["value_category"]] = group["n"]
    ScoreDaily.objects.filter(agent_id=agent_id, day=day).delete()
    ScoreDaily.objects.bulk_create(rows.values())


def _number_expression():
    """A score as a number in SQL: the numeric value, or 1.0 / 0.0 for a boolean."""
    from django.db.models import Case, Value, When

    return Case(
        When(kind=Score.Kind.BOOLEAN, value_bool=True, then=Value(1.0)),
        When(kind=Score.Kind.BOOLEAN, then=Value(0.0)),
        default=Cast("value_number", FloatField()),
        output_field=FloatField(),
    )


def version_means(agent_id: int, *, since, until) -> list[dict]:
    """[{name, version, count, mean}] of the agent's numeric and boolean scores by the days
    their runs started in [since, until), from the daily rollups, newest version first."""
    rows = (
        ScoreDaily.objects.filter(
            agent_id=agent_id, day__gte=since.date(), day__lte=until.date(), numeric_count__gt=0
        )
        .values("name", "version")
        .order_by()
        .annotate(n=Sum("numeric_count"), total=Sum("total"))
    )
    out = [
        {
            "name": row["name"],
            "version": row["version"],
            "count": row["n"],
            "mean": row["total"] / row["n"] if row["n"] else None,
        }
        for row in rows
    ]
    return sorted(out, key=lambda r: (r["name"], r["version"]), reverse=False)


def run_scores(run: Run) -> list[Score]:
    return list(Score.objects.filter(run=run).order_by("name", "-created_at"))


# --- Score SLOs ----------------------------------------------------------------------------


def slo_window_counts(slos, windows: dict[str, tuple[datetime, datetime]]) -> dict[int, dict]:
    """{slo id: {window name: WindowCounts}} for the score SLOs among `slos`, in one query:
    runs = scores counted, succeeded = their sum (a mean of 0..1 scores is a good fraction)."""
    from cockpit.models import Slo
    from cockpit.slo import WindowCounts

    score_slos = [slo for slo in slos if slo.kind == Slo.Kind.SCORE_MEAN]
    if not score_slos or not windows:
        return {}
    earliest = min(start for start, _ in windows.values())
    condition = Q()
    for slo in score_slos:
        condition |= Q(agent_id=slo.agent_id, name=slo.score_name)
    aggregates = {}
    for name, (start, end) in windows.items():
        inside = Q(run_started_at__gte=start, run_started_at__lt=end)
        aggregates[f"n_{name}"] = Count("id", filter=inside)
        aggregates[f"s_{name}"] = Sum("number", filter=inside)
    rows = (
        Score.objects.filter(condition, run_started_at__gte=earliest)
        .exclude(kind=Score.Kind.CATEGORICAL)
        .annotate(number=_number_expression())
        .values("agent_id", "name")
        .order_by()
        .annotate(**aggregates)
    )
    found = defaultdict(dict)
    for row in rows:
        found[(row["agent_id"], row["name"])] = row
    out = {}
    for slo in score_slos:
        row = found.get((slo.agent_id, slo.score_name), {})
        out[slo.pk] = {
            name: WindowCounts(runs=row.get(f"n_{name}", 0), succeeded=row.get(f"s_{name}") or 0)
            for name in windows
        }
    return out
