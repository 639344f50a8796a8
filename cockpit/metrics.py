"""Prometheus text exposition (format 0.0.4) of the fleet, read from rollups.

Counters are totals since each agent was first seen, so Grafana charts them with rate() and
increase(); the run duration histogram is cumulative per `le` bound in seconds, converted from
the rollups' log-bucket histograms (a rollup bucket counts under a bound when its top is at or
below it, so a bound's count errs low by at most one ~2 % bucket). Gauges give agents' state
and the alerts firing now. One scrape costs three queries.
"""

from __future__ import annotations

import math
from collections import Counter

from django.utils import timezone

from cockpit import histogram, rollups
from cockpit.models import AlertEvent
from traces.models import Agent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Run durations in seconds: from a quick tool call to a long research run.
DURATION_BOUNDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
OUTCOMES = ("successes", "failures", "escalated", "abandoned", "unknown")
OUTCOME_LABEL = {"successes": "success", "failures": "failure"}
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


def escape(value: str) -> str:
    """A label value as the exposition format wants it: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs) -> str:
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs.items()) + "}"


def number(value) -> str:
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if not value.is_integer() else str(int(value))


class Exposition:
    """Metric families in order: each gets its HELP and TYPE once, then its samples."""

    def __init__(self):
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def family(self, name: str, kind: str, help_text: str) -> list[str]:
        if name not in self.families:
            self.families[name] = (kind, help_text, [])
        return self.families[name][2]

    def sample(self, name: str, kind: str, help_text: str, value, suffix: str = "", /, **pairs):
        self.family(name, kind, help_text).append(
            f"{name}{suffix}{labels(**pairs) if pairs else ''} {number(value)}"
        )

    def render(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self.families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def exposition(*, now=None) -> str:
    now = now or timezone.now()
    agents = list(Agent.objects.select_related("project").order_by("project__name", "name"))
    out = Exposition()
    out.family("cockpit_agent_runs_total", "counter", "Runs started, by outcome.")
    if agents:
        since = min(agent.first_seen_at for agent in agents)
        stats = rollups.agent_window([a.pk for a in agents], since, now, now=now)
    else:
        stats = {}
    for agent in agents:
        window = stats.get(agent.pk) or rollups.WindowStats()
        who = {"project": agent.project.name, "agent": agent.name}
        for field in OUTCOMES:
            out.sample(
                "cockpit_agent_runs_total",
                "counter",
                "Runs started, by outcome.",
                getattr(window, field),
                **who,
                outcome=OUTCOME_LABEL.get(field, field),
            )
        out.sample(
            "cockpit_agent_error_runs_total",
            "counter",
            "Runs that ended in error.",
            window.error_runs,
            **who,
        )
        out.sample(
            "cockpit_agent_tool_errors_total",
            "counter",
            "Tool calls that failed, transient (worth retrying) or permanent.",
            window.tool_errors_transient,
            **who,
            type="transient",
        )
        out.sample(
            "cockpit_agent_tool_errors_total",
            "counter",
            "Tool calls that failed, transient (worth retrying) or permanent.",
            window.tool_errors_permanent,
            **who,
            type="permanent",
        )
        out.sample(
            "cockpit_agent_cost_usd_total",
            "counter",
            "Cost of runs in US dollars (a floor where a model has no known price).",
            window.cost_usd,
            **who,
        )
        for token_type in TOKEN_TYPES:
            out.sample(
                "cockpit_agent_tokens_total",
                "counter",
                "Tokens used, by type (input includes cache reads and writes).",
                getattr(window, f"{token_type}_tokens"),
                **who,
                type=token_type,
            )
        out.sample(
            "cockpit_agent_llm_calls_total", "counter", "Model calls made.", window.llm_calls, **who
        )
        out.sample(
            "cockpit_agent_tool_calls_total",
            "counter",
            "Tool calls made.",
            window.tool_calls,
            **who,
        )
        _duration_histogram(out, window, who)
        for state in Agent.State.values:
            out.sample(
                "cockpit_agent_state",
                "gauge",
                "1 for the agent's current state (active, paused, stopped), else 0.",
                1 if agent.state == state else 0,
                **who,
                state=state,
            )
    firing = Counter(AlertEvent.objects.firing().values_list("kind", flat=True))
    for kind in AlertEvent.Kind.values:
        out.sample(
            "cockpit_alerts_firing",
            "gauge",
            "Alert episodes firing now, by kind.",
            firing.get(kind, 0),
            kind=kind,
        )
    return out.render()


def _duration_histogram(out: Exposition, window, who: dict) -> None:
    name = "cockpit_agent_run_duration_seconds"
    help_text = "Run durations in seconds."
    hist = window.run_hist
    for bound in DURATION_BOUNDS:
        out.sample(
            name,
            "histogram",
            help_text,
            histogram.count_at_most(hist, bound * 1000),
            "_bucket",
            **who,
            le=number(bound),
        )
    total = histogram.count(hist)
    out.sample(name, "histogram", help_text, total, "_bucket", **who, le="+Inf")
    out.sample(name, "histogram", help_text, window.duration_ms_sum / 1000, "_sum", **who)
    out.sample(name, "histogram", help_text, total, "_count", **who)
