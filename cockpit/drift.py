"""Behaviour drift without labels: does an agent still behave as it did?

Per agent, four distributions of its recent runs are compared with a baseline window before
them (the same windows as cohort scans: the last 24 hours against the week before, or the last
third of a shorter history against the rest):

- steps per run (LLM and tool steps), tokens per run, output length (characters of the final
  answer): binned at the baseline's deciles;
- tools used: the share of tool calls per tool.

Each gets a population stability index, PSI = Σ (recent% − baseline%) · ln(recent% / baseline%),
with empty bins floored at PSI_FLOOR. Read it as: below 0.1 stable, 0.1–0.25 moderate shift,
above 0.25 a major shift; DRIFT_ALERT opens a "behaviour drift" alert. Both windows need
MIN_RUNS runs, else the agent is "too few runs to tell".
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from cockpit import cohorts
from cockpit.models import AlertEvent, RunProfile
from traces.models import Agent

PSI_FLOOR = 1e-4
MODERATE = 0.1
DRIFT_ALERT = 0.25
MIN_RUNS = 100
BINS = 10
# Runs read per window and agent (the newest): enough for deciles, bounded on busy agents.
SAMPLE_RUNS = 5_000

DIMENSIONS = {
    "steps": "steps per run",
    "tokens": "tokens per run",
    "output": "output length",
    "tools": "tools used",
}


def psi(baseline: list[float], recent: list[float]) -> float:
    """Population stability index of two distributions given as shares (each sums to 1)."""
    total = 0.0
    for b, r in zip(baseline, recent, strict=True):
        b, r = max(b, PSI_FLOOR), max(r, PSI_FLOOR)
        total += (r - b) * math.log(r / b)
    return total


def decile_edges(values: list[float], bins: int = BINS) -> list[float]:
    """Bin edges at the baseline's deciles, then its maximum (duplicates dropped: discrete
    values such as step counts give fewer, wider bins)."""
    ordered = sorted(values)
    inner = {ordered[min(len(ordered) - 1, len(ordered) * i // bins)] for i in range(1, bins)}
    return sorted(inner | {ordered[-1]})


def shares(values: list[float], edges: list[float]) -> list[float]:
    """The share of values in each bin: (-inf, e0), [e0, e1), …, [e_n-2, e_n-1] and, past the
    baseline's maximum e_n-1, (e_n-1, +inf): a run beyond anything the baseline did is a bin
    of its own, so a shift off a constant baseline still shows."""
    inner, top = edges[:-1], edges[-1]
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(inner, value) if value <= top else len(edges)] += 1
    total = len(values) or 1
    return [count / total for count in counts]


def numeric_psi(baseline: list[float], recent: list[float]) -> tuple[float, list, list, list]:
    edges = decile_edges(baseline)
    before, after = shares(baseline, edges), shares(recent, edges)
    return psi(before, after), edges, before, after


def categorical_psi(
    baseline: dict[str, int], recent: dict[str, int]
) -> tuple[float, list, list, list]:
    names = sorted(
        set(baseline) | set(recent), key=lambda n: -(baseline.get(n, 0) + recent.get(n, 0))
    )
    total_b, total_r = sum(baseline.values()) or 1, sum(recent.values()) or 1
    before = [baseline.get(name, 0) / total_b for name in names]
    after = [recent.get(name, 0) / total_r for name in names]
    return psi(before, after), names, before, after


def level(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value >= DRIFT_ALERT:
        return "major"
    if value >= MODERATE:
        return "moderate"
    return "stable"


@dataclass
class Dimension:
    key: str
    label: str
    psi: float | None
    level: str
    bins: list = field(default_factory=list)  # labels of bins or tool names
    before: list = field(default_factory=list)
    after: list = field(default_factory=list)
    mean_before: float | None = None
    mean_after: float | None = None


@dataclass
class AgentDrift:
    agent: Agent
    base_runs: int
    recent_runs: int
    dimensions: list[Dimension]
    since: datetime
    split: datetime
    until: datetime

    @property
    def too_few(self) -> bool:
        return min(self.base_runs, self.recent_runs) < MIN_RUNS

    @property
    def worst(self) -> Dimension | None:
        scored = [d for d in self.dimensions if d.psi is not None]
        return max(scored, key=lambda d: d.psi) if scored else None

    @property
    def level(self) -> str:
        return "unknown" if self.too_few or self.worst is None else self.worst.level


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _edges_labels(edges: list[float]) -> list[str]:
    """Labels of the bins of shares(): below the first edge, between edges, beyond the top."""
    labels = [f"< {edges[0]:g}"]
    labels += [f"{low:g}–{high:g}" for low, high in zip(edges, edges[1:], strict=False)]
    labels.append(f"> {edges[-1]:g}")
    return labels


def agent_drift(agent: Agent, *, now: datetime | None = None) -> AgentDrift:
    """The agent's drift on every dimension."""
    now = now or timezone.now()
    since, split, until = cohorts.windows([agent.pk], now)
    windows = {"base": (since, split), "recent": (split, until)}
    data = {name: defaultdict(list) for name in windows}
    tools = {name: defaultdict(int) for name in windows}
    counts = {}
    for name, (start, end) in windows.items():
        rows = (
            RunProfile.objects.filter(agent=agent, started_at__gte=start, started_at__lt=end)
            .annotate(tokens=F("run__input_tokens") + F("run__output_tokens"))
            .order_by("-started_at")
            .values_list("steps", "tokens", "output_chars", "tools")[:SAMPLE_RUNS]
        )
        n = 0
        for steps, tokens, output, used in rows:
            n += 1
            data[name]["steps"].append(float(steps))
            data[name]["tokens"].append(float(tokens))
            data[name]["output"].append(float(output))
            for tool, calls in (used or {}).items():
                tools[name][tool] += calls
        counts[name] = n
    dimensions = []
    enough = min(counts.values()) >= MIN_RUNS
    for key in ("steps", "tokens", "output"):
        before, after = data["base"][key], data["recent"][key]
        value, edges, shares_before, shares_after = (
            numeric_psi(before, after) if enough else (None, [], [], [])
        )
        dimensions.append(
            Dimension(
                key=key,
                label=DIMENSIONS[key],
                psi=value,
                level=level(value),
                bins=_edges_labels(edges) if enough else [],
                before=shares_before,
                after=shares_after,
                mean_before=_mean(before),
                mean_after=_mean(after),
            )
        )
    value, names, shares_before, shares_after = (
        categorical_psi(tools["base"], tools["recent"])
        if enough and (tools["base"] or tools["recent"])
        else (None, [], [], [])
    )
    dimensions.append(
        Dimension(
            key="tools",
            label=DIMENSIONS["tools"],
            psi=value,
            level=level(value),
            bins=names,
            before=shares_before,
            after=shares_after,
        )
    )
    return AgentDrift(agent, counts["base"], counts["recent"], dimensions, since, split, until)


def fleet_drift(*, now: datetime | None = None) -> list[AgentDrift]:
    """Every agent's drift, the most drifted first."""
    now = now or timezone.now()
    recent_agents = Agent.objects.filter(last_seen_at__gte=now - cohorts.RECENT).select_related(
        "project"
    )
    results = [agent_drift(agent, now=now) for agent in recent_agents]
    return sorted(
        results, key=lambda d: (d.too_few, -(d.worst.psi if d.worst and d.worst.psi else 0))
    )


def evaluate_drift(*, now: datetime | None = None) -> dict[str, int]:
    """Open a drift alert per agent and dimension past DRIFT_ALERT; resolve the rest."""
    from cockpit.slo import open_alert, resolve_alert

    now = now or timezone.now()
    opened = resolved = 0
    for result in fleet_drift(now=now):
        agent = result.agent
        for dimension in result.dimensions:
            key = f"drift:{agent.pk}:{dimension.key}"
            if not result.too_few and dimension.psi is not None and dimension.psi >= DRIFT_ALERT:
                change = ""
                if dimension.mean_before is not None and dimension.mean_after is not None:
                    change = f" (mean {dimension.mean_before:.1f} → {dimension.mean_after:.1f})"
                event = open_alert(
                    key=key,
                    kind=AlertEvent.Kind.BEHAVIOUR_DRIFT,
                    project=agent.project,
                    agent=agent,
                    summary=(
                        f"{agent.name}: {dimension.label} drifted, PSI {dimension.psi:.2f}{change}"
                    ),
                    details={
                        "dimension": dimension.key,
                        "psi": round(dimension.psi, 4),
                        "base_runs": result.base_runs,
                        "recent_runs": result.recent_runs,
                    },
                    now=now,
                )
                opened += event is not None
            elif not result.too_few:
                resolved += resolve_alert(key, now=now) is not None
    return {"opened": opened, "resolved": resolved}
