"""Release comparison: did version B of an agent behave differently from version A?

compare_releases(agent, a, b) reads the two versions' finished runs of the last
COMPARE_WINDOW: exact counts, rates, totals and means in one aggregate query over all of them,
and distributions (latency, cost, steps, tokens, tool usage, scores) from the newest
SAMPLE_RUNS runs of each side, so the work stays bounded however busy the agent is. Each metric
gets a test that fits it (scipy), an effect size, and a plain verdict:

- rates (success, error): two-proportion z-test; effect: difference in points and Cohen's h;
- latency, cost, steps, tokens, numeric scores: Mann–Whitney U; effect: rank-biserial
  correlation (B against A: +1 means every B run is above every A run) and the median ratio;
- tool-usage mix: chi-square on the tool-call counts; effect: Cramér's V;
- boolean scores: as rates.

A sample too small to conclude says so instead of giving a verdict: fewer than MIN_SIDE runs
(or scores) on a side, or a table with expected counts under 5.

check_releases (Celery, every few minutes) compares each recent release with the version before
it once MIN_RUNS_TO_CHECK runs of each have arrived, and opens a "regression after release"
alert when a metric worsened significantly (ALERT_P) by a margin worth a person's time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from cockpit.models import Analysis, ReleaseCheck, Score
from traces.models import Agent, ReleaseMarker, Run, Span

COMPARE_WINDOW = timedelta(days=30)
SAMPLE_RUNS = 5_000
TOOL_SAMPLE_RUNS = 1_000
MIN_SIDE = 30
MIN_EXPECTED = 5
# A worsening is significant below this p-value (several metrics are tested at once, so the
# bar is stricter than the usual 5 %).
ALERT_P = 0.01
# ... and worth an alert only past these margins.
MIN_RATE_POINTS = 0.02  # two percentage points
MIN_RANK_BISERIAL = 0.1
# Releases are checked automatically once each side has this many runs, and for this long.
MIN_RUNS_TO_CHECK = 100
FINAL_RUNS = 1_000
CHECK_FOR = timedelta(days=3)

SUCCESS = Q(outcome=Run.Outcome.SUCCESS) | Q(outcome=Run.Outcome.UNKNOWN, status=Run.Status.OK)


# --- Statistics ---------------------------------------------------------------------------------


@dataclass
class TestResult:
    test: str
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None
    effect_label: str = ""
    too_small: bool = False
    reason: str = ""

    @property
    def significant(self) -> bool:
        return not self.too_small and self.p_value is not None and self.p_value < ALERT_P


def two_proportions(
    x_a: int, n_a: int, x_b: int, n_b: int, *, min_side: int = MIN_SIDE
) -> TestResult:
    """Two-proportion z-test (pooled) of B's rate against A's; effect = Cohen's h (B − A)."""
    result = TestResult(test="two-proportion z-test", effect_label="Cohen's h")
    if n_a < min_side or n_b < min_side:
        result.too_small = True
        result.reason = f"fewer than {min_side} on a side ({n_a} and {n_b})"
        return result
    p_a, p_b = x_a / n_a, x_b / n_b
    result.effect = 2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a))
    pooled = (x_a + x_b) / (n_a + n_b)
    expected = min(n * share for n in (n_a, n_b) for share in (pooled, 1 - pooled))
    if expected < MIN_EXPECTED:
        result.too_small = True
        result.reason = f"expected counts below {MIN_EXPECTED} (too few events to test)"
        return result
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    result.statistic = (p_b - p_a) / se
    from scipy import stats  # imported here: scipy costs every web process ~80 MB

    result.p_value = float(2 * stats.norm.sf(abs(result.statistic)))
    return result


def mann_whitney(a: list[float], b: list[float], *, min_side: int = MIN_SIDE) -> TestResult:
    """Mann–Whitney U of B against A (two-sided); effect = rank-biserial r = 2·U_B/(n_a·n_b) − 1,
    positive when B's values tend to be larger."""
    result = TestResult(test="Mann–Whitney U", effect_label="rank-biserial r")
    if len(a) < min_side or len(b) < min_side:
        result.too_small = True
        result.reason = f"fewer than {min_side} on a side ({len(a)} and {len(b)})"
        return result
    if len(set(a)) == 1 and set(a) == set(b):
        result.statistic, result.p_value, result.effect = len(a) * len(b) / 2, 1.0, 0.0
        return result
    from scipy import stats

    u_b, p_value = stats.mannwhitneyu(b, a, alternative="two-sided")
    result.statistic = float(u_b)
    result.p_value = float(p_value)
    result.effect = 2 * float(u_b) / (len(a) * len(b)) - 1
    return result


def chi_square_mix(a: dict[str, int], b: dict[str, int]) -> TestResult:
    """Chi-square test of independence on a 2 × k table of counts (e.g. tool calls by tool);
    categories with expected counts under 5 are pooled as "other". Effect = Cramér's V."""
    result = TestResult(test="chi-square", effect_label="Cramér's V")
    total_a, total_b = sum(a.values()), sum(b.values())
    if total_a < MIN_SIDE or total_b < MIN_SIDE:
        result.too_small = True
        result.reason = f"fewer than {MIN_SIDE} on a side ({total_a} and {total_b})"
        return result
    total = total_a + total_b
    kept, other_a, other_b = [], 0, 0
    for name in sorted(set(a) | set(b)):
        column = a.get(name, 0) + b.get(name, 0)
        if min(total_a, total_b) * column / total < MIN_EXPECTED:
            other_a, other_b = other_a + a.get(name, 0), other_b + b.get(name, 0)
        else:
            kept.append((a.get(name, 0), b.get(name, 0)))
    if other_a + other_b:
        if kept and min(total_a, total_b) * (other_a + other_b) / total < MIN_EXPECTED:
            # Still too rare on their own: they join the smallest category kept.
            smallest = min(range(len(kept)), key=lambda i: sum(kept[i]))
            kept[smallest] = (kept[smallest][0] + other_a, kept[smallest][1] + other_b)
        else:
            kept.append((other_a, other_b))
    if len(kept) < 2:
        result.too_small = True
        result.reason = f"expected counts below {MIN_EXPECTED} (too few calls to compare)"
        return result
    table = [[x for x, _ in kept], [y for _, y in kept]]
    from scipy import stats

    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    result.statistic = float(chi2)
    result.p_value = float(p_value)
    result.effect = math.sqrt(chi2 / total)  # min(rows, columns) − 1 = 1 for two rows
    return result


# --- Comparison ---------------------------------------------------------------------------------


@dataclass
class Metric:
    """One row of the comparison, JSON-ready (stored in Analysis.result)."""

    key: str
    label: str
    unit: str  # pct | ms | usd | count | tokens | score | mix
    a: float | None
    b: float | None
    n_a: int
    n_b: int
    test: dict
    # "worse" when higher is worse (latency, cost), "better" when higher is better (success),
    # "" when a change is neither (steps, tool mix): then it is reported, never alerted on.
    higher_is: str = ""
    detail: str = ""
    direction: str = ""  # worse | better | changed | same | unknown
    summary: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def alerting(self) -> bool:
        """Significantly worse by a margin worth an alert."""
        if self.direction != "worse" or not self.test.get("p_value"):
            return False
        if self.test["p_value"] >= ALERT_P:
            return False
        if self.unit == "pct" and self.a is not None and self.b is not None:
            return abs(self.b - self.a) >= MIN_RATE_POINTS
        return abs(self.test.get("effect") or 0) >= MIN_RANK_BISERIAL


def _judge(metric: Metric, result: TestResult) -> Metric:
    metric.test = asdict(result)
    if result.too_small:
        metric.direction = "unknown"
        metric.summary = f"Too small a sample to conclude: {result.reason}."
        return metric
    if result.p_value is None or result.p_value >= ALERT_P:
        metric.direction = "same"
        metric.summary = f"No significant difference ({_p(result.p_value)})."
        return metric
    went_up = (result.effect or 0) > 0
    if not metric.higher_is:
        metric.direction = "changed"
    else:
        metric.direction = "worse" if went_up == (metric.higher_is == "worse") else "better"
    moved = "higher" if went_up else "lower"
    if metric.unit == "mix":
        moved = "different"
    metric.summary = (
        f"B is significantly {moved} ({_p(result.p_value)}, "
        f"{result.effect_label} = {result.effect:+.2f})."
    )
    return metric


def _p(value: float | None) -> str:
    if value is None:
        return "p n/a"
    return "p < 0.0001" if value < 0.0001 else f"p = {value:.4f}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _runs(agent: Agent, version: str, since: datetime, until: datetime):
    return (
        Run.objects.filter(
            agent=agent, version=version, started_at__gte=since, started_at__lt=until
        )
        .exclude(status=Run.Status.RUNNING)
        .order_by()
    )


def _totals(runs) -> dict:
    return runs.aggregate(
        runs=Count("id"),
        successes=Count("id", filter=SUCCESS),
        errors=Count("id", filter=Q(status=Run.Status.ERROR)),
        cost=Sum("cost_usd"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        llm_calls=Sum("llm_calls"),
        tool_calls=Sum("tool_calls"),
    )


SAMPLE_FIELDS = (
    "id", "duration_ms", "cost_usd", "llm_calls", "tool_calls", "input_tokens",
    "output_tokens", "outcome", "status",
)  # fmt: skip


def _sample(runs) -> list[dict]:
    """The newest SAMPLE_RUNS runs of the side, as dicts."""
    rows = runs.order_by("-started_at").values_list(*SAMPLE_FIELDS)[:SAMPLE_RUNS]
    return [dict(zip(SAMPLE_FIELDS, row, strict=True)) for row in rows]


def _succeeded(row: dict) -> bool:
    return row["outcome"] == "success" or (row["outcome"] == "" and row["status"] == "ok")


def _tool_mix(run_ids: list[int]) -> dict[str, int]:
    rows = (
        Span.objects.filter(run_id__in=run_ids[:TOOL_SAMPLE_RUNS], kind=Span.Kind.TOOL)
        .values("tool_name")
        .order_by()
        .annotate(n=Count("id"))
    )
    return {row["tool_name"] or "unnamed tool": row["n"] for row in rows}


def _score_values(agent: Agent, version: str, since: datetime, until: datetime) -> dict:
    """{name: (kind, [values])} of the version's scores, newest SAMPLE_RUNS per name."""
    rows = (
        Score.objects.filter(
            agent=agent, version=version, run_started_at__gte=since, run_started_at__lt=until
        )
        .exclude(kind=Score.Kind.CATEGORICAL)
        .order_by("name", "-run_started_at")
        .values_list("name", "kind", "value_number", "value_bool")
    )
    out: dict[str, tuple[str, list]] = {}
    for name, kind, number, flag in rows.iterator(chunk_size=5000):
        kind_values = out.setdefault(name, (kind, []))
        if len(kind_values[1]) < SAMPLE_RUNS:
            kind_values[1].append(float(flag) if kind == Score.Kind.BOOLEAN else number)
    return out


def previous_version(agent: Agent, version: str) -> str | None:
    """The version released before `version` (by release marker), else the most recent other
    version that ran."""
    marker = ReleaseMarker.objects.filter(agent=agent, version=version).first()
    earlier = ReleaseMarker.objects.filter(agent=agent).exclude(version=version)
    if marker is not None:
        earlier = earlier.filter(at__lt=marker.at)
    found = earlier.order_by("-at").values_list("version", flat=True).first()
    if found:
        return found
    since = timezone.now() - COMPARE_WINDOW
    return (
        Run.objects.filter(agent=agent, started_at__gte=since)
        .exclude(version__in=["", version])
        .order_by("-started_at")
        .values_list("version", flat=True)
        .first()
    )


def default_versions(agent: Agent) -> tuple[str | None, str | None]:
    """(A, B): the latest version against the one before it."""
    latest = (
        ReleaseMarker.objects.filter(agent=agent).order_by("-at").values_list("version", flat=True)
    ).first() or agent.current_version
    if not latest:
        return None, None
    return previous_version(agent, latest), latest


def compare_releases(
    agent: Agent,
    a: str,
    b: str,
    *,
    now: datetime | None = None,
    include_scores: bool = True,
    progress: Callable[[int, str], None] | None = None,
) -> dict:
    """Compare version b of the agent against version a. Returns a JSON-ready dict:
    {agent, a, b, since, until, runs: {a, b}, sampled: {a, b}, metrics: [Metric as dict],
    regressed: [metric keys that alert]}."""
    now = now or timezone.now()
    since = now - COMPARE_WINDOW
    say = progress or (lambda percent, stage: None)
    say(5, "Counting runs of both versions")
    runs_a, runs_b = _runs(agent, a, since, now), _runs(agent, b, since, now)
    totals_a, totals_b = _totals(runs_a), _totals(runs_b)
    say(25, f"Sampling runs of {a}")
    sample_a = _sample(runs_a)
    say(45, f"Sampling runs of {b}")
    sample_b = _sample(runs_b)
    say(60, "Reading tool calls")
    mix_a = _tool_mix([row["id"] for row in sample_a])
    mix_b = _tool_mix([row["id"] for row in sample_b])
    metrics = _rate_metrics(totals_a, totals_b)
    metrics += _distribution_metrics(sample_a, sample_b, totals_a, totals_b)
    metrics.append(_mix_metric(mix_a, mix_b))
    if include_scores:
        say(80, "Reading scores")
        metrics += _score_metrics(
            _score_values(agent, a, since, now), _score_values(agent, b, since, now)
        )
    say(100, "Done")
    return {
        "agent": agent.name,
        "agent_id": agent.pk,
        "a": a,
        "b": b,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "runs": {"a": totals_a["runs"], "b": totals_b["runs"]},
        "sampled": {"a": len(sample_a), "b": len(sample_b)},
        "metrics": [asdict(metric) for metric in metrics],
        "regressed": [metric.key for metric in metrics if metric.alerting],
    }


def _rate_metrics(totals_a: dict, totals_b: dict) -> list[Metric]:
    n_a, n_b = totals_a["runs"], totals_b["runs"]
    out = []
    for key, label, count_key, higher_is in (
        ("success_rate", "Success rate", "successes", "better"),
        ("error_rate", "Error rate", "errors", "worse"),
    ):
        x_a, x_b = totals_a[count_key], totals_b[count_key]
        metric = Metric(
            key=key,
            label=label,
            unit="pct",
            a=x_a / n_a if n_a else None,
            b=x_b / n_b if n_b else None,
            n_a=n_a,
            n_b=n_b,
            test={},
            higher_is=higher_is,
            detail=f"{x_a:,} of {n_a:,} · {x_b:,} of {n_b:,}",
        )
        out.append(_judge(metric, two_proportions(x_a, n_a, x_b, n_b)))
    return out


def _distribution_metrics(sample_a, sample_b, totals_a, totals_b) -> list[Metric]:
    def values(sample, pick):
        return [float(pick(row)) for row in sample]

    def tokens(row):
        return row["input_tokens"] + row["output_tokens"]

    def steps(row):
        return row["llm_calls"] + row["tool_calls"]

    latency_a = values(sample_a, lambda r: r["duration_ms"])
    latency_b = values(sample_b, lambda r: r["duration_ms"])
    out = []
    latency = Metric(
        key="latency",
        label="Latency",
        unit="ms",
        a=_median(latency_a),
        b=_median(latency_b),
        n_a=len(latency_a),
        n_b=len(latency_b),
        test={},
        higher_is="worse",
        extra={
            "p50": [_quantile(latency_a, 0.5), _quantile(latency_b, 0.5)],
            "p95": [_quantile(latency_a, 0.95), _quantile(latency_b, 0.95)],
        },
    )
    latency.detail = "p50 and p95 of the sampled runs"
    out.append(_judge(latency, mann_whitney(latency_a, latency_b)))

    cost_a = values(sample_a, lambda r: r["cost_usd"])
    cost_b = values(sample_b, lambda r: r["cost_usd"])
    out.append(
        _judge(
            Metric(
                key="cost_per_run",
                label="Cost per run",
                unit="usd",
                a=_mean_total(totals_a["cost"], totals_a["runs"]),
                b=_mean_total(totals_b["cost"], totals_b["runs"]),
                n_a=len(cost_a),
                n_b=len(cost_b),
                test={},
                higher_is="worse",
                detail="mean over all runs; test on the sampled runs",
                extra={"median": [_median(cost_a), _median(cost_b)]},
            ),
            mann_whitney(cost_a, cost_b),
        )
    )
    ok_cost_a = [float(r["cost_usd"]) for r in sample_a if _succeeded(r)]
    ok_cost_b = [float(r["cost_usd"]) for r in sample_b if _succeeded(r)]
    out.append(
        _judge(
            Metric(
                key="cost_per_success",
                label="Cost per successful run",
                unit="usd",
                a=_mean_total(totals_a["cost"], totals_a["successes"]),
                b=_mean_total(totals_b["cost"], totals_b["successes"]),
                n_a=len(ok_cost_a),
                n_b=len(ok_cost_b),
                test={},
                higher_is="worse",
                detail="all spend over successful runs; test on successful sampled runs",
            ),
            mann_whitney(ok_cost_a, ok_cost_b),
        )
    )
    for key, label, pick, unit, higher_is, total_keys in (
        ("steps", "Steps per run", steps, "count", "", ("llm_calls", "tool_calls")),
        ("tokens", "Tokens per run", tokens, "tokens", "worse", ("input_tokens", "output_tokens")),
    ):
        values_a, values_b = values(sample_a, pick), values(sample_b, pick)
        out.append(
            _judge(
                Metric(
                    key=key,
                    label=label,
                    unit=unit,
                    a=_mean_total(sum(totals_a[k] or 0 for k in total_keys), totals_a["runs"]),
                    b=_mean_total(sum(totals_b[k] or 0 for k in total_keys), totals_b["runs"]),
                    n_a=len(values_a),
                    n_b=len(values_b),
                    test={},
                    higher_is=higher_is,
                    detail="mean over all runs; test on the sampled runs",
                    extra={"median": [_median(values_a), _median(values_b)]},
                ),
                mann_whitney(values_a, values_b),
            )
        )
    return out


def _mean_total(total, count: int) -> float | None:
    return float(total or 0) / count if count else None


def _mix_metric(mix_a: dict[str, int], mix_b: dict[str, int]) -> Metric:
    calls_a, calls_b = sum(mix_a.values()), sum(mix_b.values())
    shares = {
        tool: [
            mix_a.get(tool, 0) / calls_a if calls_a else 0,
            mix_b.get(tool, 0) / calls_b if calls_b else 0,
        ]
        for tool in sorted(
            set(mix_a) | set(mix_b), key=lambda t: -(mix_a.get(t, 0) + mix_b.get(t, 0))
        )
    }
    metric = Metric(
        key="tool_mix",
        label="Tool-usage mix",
        unit="mix",
        a=None,
        b=None,
        n_a=calls_a,
        n_b=calls_b,
        test={},
        detail=f"tool calls of the newest {TOOL_SAMPLE_RUNS:,} runs of each side",
        extra={"shares": shares},
    )
    return _judge(metric, chi_square_mix(mix_a, mix_b))


def _score_metrics(scores_a: dict, scores_b: dict) -> list[Metric]:
    out = []
    for name in sorted(set(scores_a) | set(scores_b)):
        kind = (scores_a.get(name) or scores_b.get(name))[0]
        values_a = scores_a.get(name, (kind, []))[1]
        values_b = scores_b.get(name, (kind, []))[1]
        metric = Metric(
            key=f"score:{name}",
            label=f"Score: {name}",
            unit="pct" if kind == Score.Kind.BOOLEAN else "score",
            a=statistics.fmean(values_a) if values_a else None,
            b=statistics.fmean(values_b) if values_b else None,
            n_a=len(values_a),
            n_b=len(values_b),
            test={},
            higher_is="better",
            detail="share of true" if kind == Score.Kind.BOOLEAN else "mean score",
        )
        if kind == Score.Kind.BOOLEAN:
            result = two_proportions(
                int(sum(values_a)), len(values_a), int(sum(values_b)), len(values_b)
            )
        else:
            result = mann_whitney(values_a, values_b)
        out.append(_judge(metric, result))
    return out


# --- Automatic checks after releases ----------------------------------------------------------


def check_releases(*, now: datetime | None = None) -> dict[str, int]:
    """Compare each release of the last CHECK_FOR with the version before it, once both have
    MIN_RUNS_TO_CHECK runs; open or resolve "regression after release" alerts."""
    from cockpit.slo import open_alert, resolve_alert

    now = now or timezone.now()
    opened = resolved = checked = 0
    final = set(ReleaseCheck.objects.filter(final=True).values_list("release_id", flat=True))
    releases = (
        ReleaseMarker.objects.filter(at__gte=now - CHECK_FOR)
        .exclude(pk__in=final)
        .select_related("agent", "agent__project")
    )
    for release in releases:
        agent = release.agent
        baseline = previous_version(agent, release.version)
        if not baseline:
            continue
        since = now - COMPARE_WINDOW
        new_runs = _runs(agent, release.version, since, now).count()
        old_runs = _runs(agent, baseline, since, now).count()
        check, _ = ReleaseCheck.objects.get_or_create(
            release=release, defaults={"baseline_version": baseline, "checked_at": now}
        )
        check.baseline_version, check.runs_new, check.runs_baseline = baseline, new_runs, old_runs
        check.checked_at = now
        if min(new_runs, old_runs) < MIN_RUNS_TO_CHECK:
            check.save()
            continue
        result = compare_releases(agent, baseline, release.version, now=now)
        checked += 1
        findings = [
            {
                "metric": m["key"],
                "label": m["label"],
                "p_value": m["test"]["p_value"],
                "summary": m["summary"],
            }
            for m in result["metrics"]
            if m["key"] in result["regressed"]
        ]
        check.findings = findings
        check.verdict = ReleaseCheck.Verdict.REGRESSED if findings else ReleaseCheck.Verdict.CLEAN
        check.final = min(new_runs, old_runs) >= FINAL_RUNS or now - release.at >= CHECK_FOR
        check.save()
        key = f"regression:{agent.pk}:{release.version}"
        if findings:
            names = ", ".join(f["label"].lower() for f in findings)
            event = open_alert(
                key=key,
                kind="release_regression",
                project=agent.project,
                agent=agent,
                summary=f"{agent.name} {release.version} regressed against {baseline}: {names}",
                details={"version": release.version, "baseline": baseline, "findings": findings},
                now=now,
            )
            opened += event is not None
        else:
            resolved += resolve_alert(key, now=now) is not None
    return {"checked": checked, "opened": opened, "resolved": resolved}


# --- Analysis rows (progress for pages) ---------------------------------------------------------


def comparison_key(agent: Agent, a: str, b: str) -> str:
    return f"{agent.pk}:{a}:{b}"


def run_comparison(analysis: Analysis) -> dict:
    params = analysis.params
    agent = Agent.objects.get(pk=params["agent_id"])
    return compare_releases(agent, params["a"], params["b"], progress=analysis_progress(analysis))


def analysis_progress(analysis: Analysis) -> Callable[[int, str], None]:
    """A progress callback writing percent and stage to the analysis row (pages poll it)."""

    def say(percent: int, stage: str) -> None:
        Analysis.objects.filter(pk=analysis.pk).update(
            progress=max(0, min(100, percent)), stage=stage[:200]
        )

    return say
