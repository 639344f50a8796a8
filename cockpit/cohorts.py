"""Cohorts: the slice of users or tasks that degrades while the aggregate looks fine.

A cohort is the runs sharing a value of one attribute: a Run column (task type, version,
team, environment) or any trait the run's root span or resource carries (user tier, locale,
channel, customer, …; see traits_of, stored per run in RunProfile.traits off the ingest path).

scan(key) compares each cohort's recent window with its own baseline window before it; for an
agent released inside the scanned span (with room on both sides), the recent window starts at
its latest release, so the baseline is the cohort before the release:

- success rate: two-proportion z-test;
- latency and cost per run: Mann–Whitney U on the runs (a bounded, evenly thinned sample on a
  busy fleet);

and reports the cohorts that worsened significantly (p < FINDING_P) by a real margin while
their agent as a whole stayed within bounds (AGGREGATE_BOUNDS). Findings are ranked by how far
they moved; each carries a trend of the cohort against the rest of its agent. Counts come from
one aggregate query over the windows' runs; distributions from one thinned sample query.

scan_all (Celery) scans every cohort key in the background and keeps one "cohort degradation"
alert open per finding.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F, Min
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Mod, TruncHour, TruncMinute
from django.utils import timezone

from cockpit.models import AlertEvent, Analysis, RunProfile
from cockpit.regressions import SUCCESS, _median, mann_whitney, two_proportions
from cockpit.rollups import EPOCH
from traces.models import Agent, ReleaseMarker, Run

# Attributes that are run columns already, ids (too many values to be cohorts) or content.
RUN_KEYS = {
    "task_type": "task type",
    "version": "version",
    "team": "team",
    "agent__environment": "environment",
}
SKIPPED_PREFIXES = (
    "telemetry.", "process.", "host.", "os.", "otel.", "gen_ai.", "llm.", "openinference.",
    "input.", "output.", "error.", "http.", "exception.", "code.", "thread.", "cockpit.score.",
    "retrieval.", "tool.", "embedding.", "db.", "url.", "server.", "net.", "rpc.",
)  # fmt: skip
SKIPPED_KEYS = {
    "service.name", "service.version", "service.instance.id", "user.id", "session.id",
    "cockpit.run.outcome", "cockpit.confidence", "cockpit.task.type", "cockpit.team",
    "agent.name", "metadata", "tag.tags", "deployment.environment",
    "deployment.environment.name",
}  # fmt: skip
TRAIT_VALUE_CHARS = 64
TRAITS_PER_RUN = 20

RECENT = timedelta(hours=24)
BASELINE = timedelta(days=7)
# Per agent, the cohorts with the most runs are tested; the rest are too small to matter.
COHORTS_PER_AGENT = 12
# Runs read for distributions, fleet-wide; a busier window is thinned evenly (run id modulo).
SAMPLE_TARGET = 40_000
FINDING_P = 0.01
# A cohort finding needs this much movement …
MIN_RATE_DROP = 0.10  # ten points of success rate
MIN_MEDIAN_RATIO = 1.25  # a quarter slower or costlier
# … and at least this many times what its agent as a whole moved.
OVER_AGGREGATE = 2.0
MIN_RANK_BISERIAL = 0.1
# … while its agent as a whole moved less than this: the aggregate "looks fine".
AGGREGATE_BOUNDS = {"success_rate": 0.10, "latency": 1.25, "cost": 1.25}


def traits_of(attributes: dict, resource: dict) -> dict[str, str]:
    """The cohort attributes of a run: its root span's and resource's short string, boolean
    and integer attributes, minus ids, content and what Run columns already hold."""
    traits: dict[str, str] = {}
    for source in (resource or {}, attributes or {}):
        for key, value in source.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int):
                value = str(value)
            elif not isinstance(value, str) or not value or len(value) > TRAIT_VALUE_CHARS:
                continue
            if key in SKIPPED_KEYS or key.startswith(SKIPPED_PREFIXES):
                continue
            lowered = key.lower()
            if lowered.endswith(("id", ".key", "token")) or len(key) > 100:
                continue
            traits[key] = value
    if len(traits) > TRAITS_PER_RUN:
        traits = dict(sorted(traits.items())[:TRAITS_PER_RUN])
    return traits


def trait_keys(*, agent: Agent | None = None, now: datetime | None = None) -> list[str]:
    """Trait keys seen on recent runs (of the agent, or the fleet), most common first."""
    now = now or timezone.now()
    profiles = RunProfile.objects.filter(started_at__gte=now - RECENT - BASELINE)
    if agent is not None:
        profiles = profiles.filter(agent=agent)
    counts: dict[str, int] = defaultdict(int)
    for traits in (
        profiles.exclude(traits={}).order_by("-started_at").values_list("traits", flat=True)[:2_000]
    ):
        for key in traits:
            counts[key] += 1
    return sorted(counts, key=lambda k: (-counts[k], k))


def keys_for(agent: Agent | None = None) -> list[tuple[str, str]]:
    """[(key, label)] a person may segment by: Run columns, then traits seen lately."""
    return [*RUN_KEYS.items(), *((f"trait:{key}", key) for key in trait_keys(agent=agent))]


def windows(agent_ids: list[int] | None, now: datetime) -> tuple[datetime, datetime, datetime]:
    """(baseline start, recent start, now): the last 24 hours against up to a week before
    them; a history shorter than three days compares its last third with the rest."""
    runs = Run.objects.all()
    if agent_ids is not None:
        runs = runs.filter(agent_id__in=agent_ids)
    first = runs.filter(started_at__gte=now - RECENT - BASELINE).aggregate(first=Min("started_at"))[
        "first"
    ]
    history = now - first if first else RECENT + BASELINE
    recent = RECENT if history >= 3 * RECENT else history / 3
    return now - recent - min(history - recent, BASELINE), now - recent, now


def _value_expression(key: str):
    if key.startswith("trait:"):
        return KeyTextTransform(key.removeprefix("trait:"), "profile__traits")
    if key not in RUN_KEYS:
        raise ValueError(f"unknown cohort key {key!r}")
    return F(key)


TREND_POINTS = 24


def _floor(moment: datetime, size: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // size) * size


def _bucket(since: datetime, until: datetime) -> tuple[type, timedelta, timedelta]:
    """(truncation, its unit, the trend's step: a whole number of units, ~TREND_POINTS)."""
    length = until - since
    trunc, unit = (TruncMinute, MINUTE) if length <= timedelta(hours=3) else (TruncHour, HOUR)
    return trunc, unit, max(1, math.ceil(length / TREND_POINTS / unit)) * unit


MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@dataclass
class Side:
    runs: int = 0
    successes: int = 0
    latencies: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.runs += row["runs"]
        self.successes += row["successes"]

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None


def _ratio(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None else None


def scan(
    key: str,
    *,
    agent: Agent | None = None,
    now: datetime | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> dict:
    """Scan one cohort key over one agent (or the fleet). JSON-ready result:
    {key, since, split, until, findings: [...], cohorts: n, agents: n}."""
    now = now or timezone.now()
    say = progress or (lambda percent, stage: None)
    agent_ids = None if agent is None else [agent.pk]
    since, split, until = windows(agent_ids, now)
    trunc, unit, step = _bucket(since, until)
    # Buckets are whole units: both windows start on one, so no bucket straddles the split.
    since, split = _floor(since, unit), _floor(split, unit)
    releases = _release_splits(agent_ids, since, until, unit)
    splits = {agent_id: at for agent_id, (at, _) in releases.items()}
    say(5, "Counting runs per cohort")
    runs = Run.objects.filter(started_at__gte=since, started_at__lt=until, agent__isnull=False)
    runs = runs.exclude(status=Run.Status.RUNNING)
    if agent is not None:
        runs = runs.filter(agent=agent)
    value = _value_expression(key)
    rows = list(
        runs.annotate(cohort=value, bucket=trunc("started_at"))
        .values("agent_id", "cohort", "bucket")
        .order_by()
        .annotate(runs=Count("id"), successes=Count("id", filter=SUCCESS))
    )
    say(45, "Sampling latencies and costs")
    sides: dict[tuple, dict[str, Side]] = defaultdict(lambda: {"base": Side(), "recent": Side()})
    trends: dict[tuple, dict[datetime, list[int]]] = defaultdict(dict)
    total = 0
    for row in rows:
        cohort = row["cohort"] if row["cohort"] is not None else ""
        period = "recent" if row["bucket"] >= splits.get(row["agent_id"], split) else "base"
        for target in ((row["agent_id"], cohort), (row["agent_id"], None)):
            sides[target][period].add(row)
        slot = since + ((row["bucket"] - since) // step) * step
        trend = trends[(row["agent_id"], cohort)].setdefault(slot, [0, 0])
        trend[0] += row["runs"]
        trend[1] += row["successes"]
        total += row["runs"]
    tested = _top_cohorts(sides)
    _sample_distributions(runs, value, split, splits, total, sides, tested)
    say(80, "Testing cohorts")
    names = dict(Agent.objects.filter(pk__in={a for a, _ in sides}).values_list("pk", "name"))
    findings = []
    for agent_id in sorted({a for a, _ in sides}):
        aggregate = _changes(sides[(agent_id, None)])
        if not aggregate["within_bounds"]:
            continue
        for cohort in tested.get(agent_id, []):
            for finding in _cohort_findings(sides[(agent_id, cohort)], aggregate):
                finding.update(
                    agent=names.get(agent_id, "?"),
                    agent_id=agent_id,
                    value=cohort,
                    split=splits.get(agent_id, split).isoformat(),
                    release=releases.get(agent_id, (None, ""))[1],
                    trend=_trend(trends, agent_id, cohort, since, until, step),
                )
                findings.append(finding)
    findings.sort(key=lambda f: -f["strength"])
    say(100, "Done")
    return {
        "key": key,
        "label": _key_label(key),
        "agent": agent.name if agent else "",
        "since": since.isoformat(),
        "split": split.isoformat(),
        "until": until.isoformat(),
        "runs": total,
        "cohorts": sum(len(v) for v in tested.values()),
        "agents": len({a for a, _ in sides}),
        "findings": findings,
    }


def _release_splits(agent_ids, since: datetime, until: datetime, unit: timedelta) -> dict:
    """{agent id: (start of its recent window, version)} for agents whose latest release falls
    inside the scanned span, leaving a quarter of it before and a tenth after."""
    span = until - since
    releases = ReleaseMarker.objects.filter(at__gt=since + span / 4, at__lt=until - span / 10)
    if agent_ids is not None:
        releases = releases.filter(agent_id__in=agent_ids)
    found = {}
    for agent_id, at, version in releases.order_by("agent_id", "at").values_list(
        "agent_id", "at", "version"
    ):
        found[agent_id] = (_floor(at, unit), version)
    return found


def _key_label(key: str) -> str:
    return RUN_KEYS.get(key) or key.removeprefix("trait:")


def _top_cohorts(sides) -> dict[int, list[str]]:
    by_agent: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for (agent_id, cohort), periods in sides.items():
        if cohort is not None:
            by_agent[agent_id].append((periods["base"].runs + periods["recent"].runs, cohort))
    return {
        agent_id: [cohort for _, cohort in sorted(pairs, reverse=True)[:COHORTS_PER_AGENT]]
        for agent_id, pairs in by_agent.items()
        if len(pairs) > 1  # one cohort is the aggregate itself
    }


def _sample_distributions(runs, value, split, splits, total, sides, tested) -> None:
    """Latencies and costs of (a thinned sample of) the windows' runs, per cohort and period."""
    every = max(1, math.ceil(total / SAMPLE_TARGET))
    sample = runs
    if every > 1:
        sample = sample.annotate(slot=Mod("id", every)).filter(slot=0)
    wanted = {(a, c) for a, cohorts in tested.items() for c in cohorts}
    for agent_id, cohort, started, duration, cost in (
        sample.annotate(cohort=value)
        .values_list("agent_id", "cohort", "started_at", "duration_ms", "cost_usd")
        .order_by()
        .iterator(chunk_size=5000)
    ):
        period = "recent" if started >= splits.get(agent_id, split) else "base"
        for target in ((agent_id, cohort if cohort is not None else ""), (agent_id, None)):
            if target[1] is not None and target not in wanted:
                continue
            side = sides[target][period]
            side.latencies.append(duration)
            side.costs.append(float(cost))


def _changes(periods: dict[str, Side]) -> dict:
    base, recent = periods["base"], periods["recent"]
    rate_change = (
        recent.success_rate - base.success_rate
        if base.success_rate is not None and recent.success_rate is not None
        else None
    )
    latency = _ratio(_median(base.latencies), _median(recent.latencies))
    cost = _ratio(_median(base.costs), _median(recent.costs))
    bounds = AGGREGATE_BOUNDS
    within = (
        (rate_change is None or abs(rate_change) < bounds["success_rate"])
        and (latency is None or 1 / bounds["latency"] < latency < bounds["latency"])
        and (cost is None or 1 / bounds["cost"] < cost < bounds["cost"])
    )
    return {
        "success_rate": rate_change,
        "latency": latency,
        "cost": cost,
        "within_bounds": within,
        "base_runs": base.runs,
        "recent_runs": recent.runs,
    }


def _cohort_findings(periods: dict[str, Side], aggregate: dict) -> list[dict]:
    base, recent = periods["base"], periods["recent"]
    found = []
    rate = two_proportions(base.successes, base.runs, recent.successes, recent.runs)
    if (
        rate.significant
        and rate.p_value < FINDING_P
        and recent.success_rate - base.success_rate <= -MIN_RATE_DROP
        and base.success_rate - recent.success_rate
        >= OVER_AGGREGATE * abs(aggregate["success_rate"] or 0)
    ):
        found.append(
            _finding(
                "success_rate",
                "success rate",
                base.success_rate,
                recent.success_rate,
                rate,
                base,
                recent,
                aggregate["success_rate"],
            )
        )
    for metric, label, values in (
        ("latency", "latency (median)", lambda s: s.latencies),
        ("cost", "cost per run (median)", lambda s: s.costs),
    ):
        result = mann_whitney(values(base), values(recent))
        before, after = _median(values(base)), _median(values(recent))
        ratio = _ratio(before, after)
        if (
            result.significant
            and result.p_value < FINDING_P
            and (result.effect or 0) >= MIN_RANK_BISERIAL
            and ratio is not None
            and ratio >= MIN_MEDIAN_RATIO
            and ratio - 1 >= OVER_AGGREGATE * abs((aggregate[metric] or 1) - 1)
        ):
            found.append(
                _finding(metric, label, before, after, result, base, recent, aggregate[metric])
            )
    return found


def _finding(metric, label, before, after, result, base, recent, aggregate_change) -> dict:
    strength = min(50.0, -math.log10(max(result.p_value, 1e-50))) * abs(result.effect or 0)
    return {
        "metric": metric,
        "label": label,
        "before": before,
        "after": after,
        "base_runs": base.runs,
        "recent_runs": recent.runs,
        "aggregate_change": aggregate_change,
        "test": asdict(result),
        "strength": strength,
    }


def _trend(trends, agent_id, cohort, since, until, step) -> dict:
    """{x: [...], cohort: [success %], rest: [success %]} of the cohort against the rest."""
    own = trends.get((agent_id, cohort), {})
    everyone: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for (other_agent, _), slots in trends.items():
        if other_agent != agent_id:
            continue
        for slot, (runs, successes) in slots.items():
            everyone[slot][0] += runs
            everyone[slot][1] += successes
    xs, mine, rest = [], [], []
    slot = since
    while slot < until:
        xs.append(slot.isoformat())
        runs, successes = own.get(slot, [0, 0])
        all_runs, all_successes = everyone.get(slot, [0, 0])
        mine.append(round(100 * successes / runs, 2) if runs else None)
        other = all_runs - runs
        rest.append(round(100 * (all_successes - successes) / other, 2) if other else None)
        slot += step
    return {"x": xs, "cohort": mine, "rest": rest}


# --- Background scan and alerts -------------------------------------------------------------------


def scan_keys(now: datetime) -> list[str]:
    """Every key the background scan covers: task type, then the traits runs carry."""
    return ["task_type", *(f"trait:{key}" for key in trait_keys(now=now)[:10])]


def scan_all(*, now: datetime | None = None) -> dict[str, int]:
    """Scan every cohort key fleet-wide; keep one cohort alert open per finding."""
    from cockpit.slo import open_alert, resolve_alert

    now = now or timezone.now()
    opened = resolved = 0
    found_keys = set()
    agents = {agent.pk: agent for agent in Agent.objects.select_related("project")}
    for key in scan_keys(now):
        for finding in scan(key, now=now)["findings"]:
            agent = agents.get(finding["agent_id"])
            if agent is None:
                continue
            alert_key = f"cohort:{agent.pk}:{key}:{finding['value']}:{finding['metric']}"[:200]
            found_keys.add(alert_key)
            event = open_alert(
                key=alert_key,
                kind=AlertEvent.Kind.COHORT_DEGRADATION,
                project=agent.project,
                agent=agent,
                summary=(
                    f"{agent.name}: {finding['label']} of {_key_label(key)} = "
                    f"{finding['value'] or '(none)'} {_describe_move(finding)} while the agent "
                    "as a whole stayed within bounds"
                ),
                details={k: v for k, v in finding.items() if k != "trend"},
                now=now,
            )
            opened += event is not None
    for event in AlertEvent.objects.firing().filter(kind=AlertEvent.Kind.COHORT_DEGRADATION):
        if event.key not in found_keys:
            resolved += resolve_alert(event.key, now=now) is not None
    return {"opened": opened, "resolved": resolved}


def _describe_move(finding: dict) -> str:
    before, after = finding["before"], finding["after"]
    since = f" since release {finding['release']}" if finding.get("release") else ""
    if finding["metric"] == "success_rate":
        return f"fell from {before:.1%} to {after:.1%}{since}"
    return (f"rose {after / before:.1f}× (median)" if before else "rose") + since


def scan_key(agent: Agent | None, key: str) -> str:
    return f"{agent.pk if agent else 'fleet'}:{key}"


def run_scan(analysis: Analysis) -> dict:
    from cockpit.regressions import analysis_progress

    params = analysis.params
    agent = Agent.objects.get(pk=params["agent_id"]) if params.get("agent_id") else None
    return scan(params["key"], agent=agent, progress=analysis_progress(analysis))


def valid_key(key: str) -> bool:
    return key in RUN_KEYS or (key.startswith("trait:") and 0 < len(key) <= 106)
