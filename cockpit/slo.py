"""SLO evaluation: compliance, error budget left, burn rates, and burn-rate alerts.

Burn rate is how fast a window spends the error budget: the bad fraction of runs divided by the
fraction the SLO allows (1 - target). A burn rate of 1 spends exactly the budget over the SLO
window; 14.4 spends 2 % of a 30-day budget in one hour. Alerts follow the multi-window,
multi-burn-rate scheme of the Google SRE workbook: each rule needs a long and a short window
both above its rate, so it fires fast and resolves as soon as things recover:

- fast burn (page):   1 h and 5 min windows both above 14.4×
- slow burn (ticket): 6 h and 30 min windows both above 6×

Pages read `slo_statuses(agents)` / `slo_status(agent)` and `firing_alerts()`; Celery runs
`evaluate_slos()` every minute (cockpit.alerting).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from cockpit import rollups, scores
from cockpit.models import AlertEvent, Slo
from traces.models import Agent, Project

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BurnRule:
    kind: str  # an AlertEvent.Kind
    severity: str
    long: timedelta
    short: timedelta
    rate: float


BURN_RULES = (
    BurnRule(
        AlertEvent.Kind.SLO_FAST_BURN,
        AlertEvent.Severity.PAGE,
        timedelta(hours=1),
        timedelta(minutes=5),
        14.4,
    ),
    BurnRule(
        AlertEvent.Kind.SLO_SLOW_BURN,
        AlertEvent.Severity.TICKET,
        timedelta(hours=6),
        timedelta(minutes=30),
        6.0,
    ),
)
BURN_WINDOWS = {"5m": timedelta(minutes=5), "30m": timedelta(minutes=30)}
BURN_WINDOWS |= {"1h": timedelta(hours=1), "6h": timedelta(hours=6)}


@dataclass
class SloStatus:
    """One SLO of one agent, as the pages show it.

    compliance: the good fraction of runs over the SLO window (0..1); for cost_per_success the
    window's cost per successful run in USD. error_budget_remaining: the budget left over the
    window, 1.0 untouched, 0 spent, negative overspent. burn_rates: by window name
    ("5m", "30m", "1h", "6h"). alert: the kind of the burn alert firing now, or "".
    """

    slo: Slo
    compliance: float | None
    met: bool
    error_budget_remaining: float
    burn_rates: dict[str, float] = field(default_factory=dict)
    runs: int = 0
    alert: str = ""

    @property
    def kind(self) -> str:
        return self.slo.kind

    @property
    def description(self) -> str:
        return self.slo.describe()

    @property
    def burn_rate_1h(self) -> float:
        return self.burn_rates.get("1h", 0.0)

    @property
    def burn_rate_5m(self) -> float:
        return self.burn_rates.get("5m", 0.0)

    @property
    def burn_rate_6h(self) -> float:
        return self.burn_rates.get("6h", 0.0)

    @property
    def error_budget_percent(self) -> float:
        return 100 * self.error_budget_remaining


# --- Counting runs in a window ---------------------------------------------------------------


@dataclass
class WindowCounts:
    """Finished runs of one agent in a window: how many, how many succeeded, what they cost,
    and how many finished within each latency threshold asked for (ms)."""

    runs: int = 0
    succeeded: int = 0
    cost_usd: Decimal = Decimal(0)
    within_ms: dict[float, int] = field(default_factory=dict)

    def within(self, threshold_ms: float) -> int:
        return self.within_ms.get(threshold_ms, 0)


def window_counts(
    agent_ids, start: datetime, end: datetime, thresholds: tuple[float, ...] = ()
) -> dict[int, WindowCounts]:
    """{agent id: WindowCounts} for runs that started in [start, end), from rollups (one
    query). Runs still in progress are left out; latency counts are exact to ~1 %."""
    # The run histogram is merged only when a latency SLO needs counts under a threshold.
    stats = rollups.agent_window(agent_ids, start, end, latency=bool(thresholds), now=end)
    return {agent_id: _counts(window, thresholds) for agent_id, window in stats.items()}


def windows_counts(
    agent_ids, windows: dict[str, tuple[datetime, datetime]], thresholds: tuple[float, ...], now
) -> dict[str, dict[int, WindowCounts]]:
    """window_counts for several windows {name: (start, end)} at once, in one query."""
    stats = rollups.agent_windows(agent_ids, windows, latency=bool(thresholds), now=now)
    return {
        name: {agent_id: _counts(window, thresholds) for agent_id, window in by_agent.items()}
        for name, by_agent in stats.items()
    }


def _counts(window: rollups.WindowStats, thresholds: tuple[float, ...]) -> WindowCounts:
    return WindowCounts(
        runs=window.finished,
        succeeded=window.successes,
        cost_usd=window.cost_usd,
        within_ms={t: window.runs_within(t) for t in thresholds},
    )


# --- Reading a window --------------------------------------------------------------------------


def bad_fraction(slo: Slo, counts: WindowCounts) -> float | None:
    """The SLO's bad fraction of the window's runs (None without finished runs)."""
    if slo.kind == Slo.Kind.COST_PER_SUCCESS:
        raise ValueError("cost_per_success is a ratio SLO: use burn_rate()")
    if not counts.runs:
        return None
    is_success = slo.kind in (Slo.Kind.SUCCESS_RATE, Slo.Kind.SCORE_MEAN)
    good = counts.succeeded if is_success else counts.within(slo.threshold)
    return max(0.0, (counts.runs - good) / counts.runs)


def cost_per_success(counts: WindowCounts) -> float | None:
    if not counts.runs:
        return None
    # With no successful run, all the spend counts against one: the ratio stays finite.
    return float(counts.cost_usd) / max(counts.succeeded, 1)


def burn_rate(slo: Slo, counts: WindowCounts) -> float:
    """How many times faster than sustainable this window spends the error budget."""
    if slo.kind == Slo.Kind.COST_PER_SUCCESS:
        cost = cost_per_success(counts)
        return cost / slo.threshold if cost is not None and slo.threshold else 0.0
    bad = bad_fraction(slo, counts)
    return bad / slo.error_budget if bad is not None else 0.0


def status_from_counts(slo: Slo, window: WindowCounts, burns: dict[str, WindowCounts]) -> SloStatus:
    burn_rates = {name: burn_rate(slo, counts) for name, counts in burns.items()}
    if slo.kind == Slo.Kind.COST_PER_SUCCESS:
        compliance = cost_per_success(window)
        ratio = compliance / slo.threshold if compliance is not None and slo.threshold else 0.0
        remaining = 1.0 - ratio
        met = ratio <= 1.0
    else:
        bad = bad_fraction(slo, window)
        compliance = None if bad is None else 1.0 - bad
        remaining = 1.0 if bad is None else 1.0 - bad / slo.error_budget
        met = bad is None or compliance >= slo.target
    return SloStatus(
        slo=slo,
        compliance=compliance,
        met=met,
        error_budget_remaining=remaining,
        burn_rates=burn_rates,
        runs=window.runs,
    )


def slo_statuses(agents, *, now: datetime | None = None) -> dict[int, list[SloStatus]]:
    """{agent id: [SloStatus, …]} for every SLO of `agents`, in three queries: the SLOs, every
    window they read (the four burn windows and each distinct SLO window) in one, and their
    firing alerts, whatever the number of agents.
    """
    now = now or timezone.now()
    agent_ids = [a.pk if isinstance(a, Agent) else a for a in agents]
    slos = list(Slo.objects.filter(agent_id__in=agent_ids).select_related("agent"))
    result: dict[int, list[SloStatus]] = {agent_id: [] for agent_id in agent_ids}
    if not slos:
        return result
    thresholds = _latency_thresholds(slos)
    ids = sorted({slo.agent_id for slo in slos})
    spans = {name: (now - length, now) for name, length in BURN_WINDOWS.items()}
    days_list = sorted({slo.window_days for slo in slos})
    spans |= {f"{days}d": (now - timedelta(days=days), now) for days in days_list}
    counts = windows_counts(ids, spans, thresholds, now)
    burns = {name: counts[name] for name in BURN_WINDOWS}
    windows = {days: counts[f"{days}d"] for days in days_list}
    scored = scores.slo_window_counts(slos, spans)  # score SLOs count scores, not runs
    firing = {
        (event.slo_id, event.kind)
        for event in AlertEvent.objects.firing().filter(slo__in=slos).only("slo_id", "kind")
    }
    for slo in slos:
        empty = WindowCounts()
        status = status_from_counts(
            slo,
            windows[slo.window_days].get(slo.agent_id, empty),
            {name: counts.get(slo.agent_id, empty) for name, counts in burns.items()},
        )
        if slo.pk in scored:
            own = scored[slo.pk]
            burn_counts = {name: own[name] for name in BURN_WINDOWS}
            status = status_from_counts(slo, own[f"{slo.window_days}d"], burn_counts)
        for rule in BURN_RULES:
            if (slo.pk, rule.kind) in firing:
                status.alert = rule.kind
                break
        result[slo.agent_id].append(status)
    return result


def slo_status(agent: Agent, *, now: datetime | None = None) -> list[SloStatus]:
    """The SLO statuses of one agent (see slo_statuses)."""
    return slo_statuses([agent], now=now)[agent.pk]


def _latency_thresholds(slos) -> tuple[float, ...]:
    return tuple(
        sorted(
            {
                slo.threshold
                for slo in slos
                if slo.kind in (Slo.Kind.LATENCY_P95, Slo.Kind.LATENCY_P99) and slo.threshold
            }
        )
    )


# --- Alerts ------------------------------------------------------------------------------------


def firing_alerts(project: Project | None = None, agent: Agent | None = None):
    """The alert episodes firing now, newest first, with project and agent loaded."""
    alerts = AlertEvent.objects.firing().select_related("project", "agent")
    if project is not None:
        alerts = alerts.filter(project=project)
    if agent is not None:
        alerts = alerts.filter(agent=agent)
    return alerts.order_by("-opened_at", "-id")


def recent_alerts(agent: Agent, limit: int = 20):
    """An agent's latest alert episodes, firing or resolved (the agent page's history)."""
    return AlertEvent.objects.filter(agent=agent).order_by("-opened_at", "-id")[:limit]


def open_alert(
    *, key: str, kind: str, project, summary: str, now: datetime, **fields
) -> AlertEvent | None:
    """Open the episode `key` unless it is open already; returns the new event, or None.

    The partial unique index on open keys makes this safe against a concurrent evaluator: the
    loser's insert fails inside its savepoint and it returns None.
    """
    if AlertEvent.objects.firing().filter(key=key).exists():
        return None
    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(
                key=key, kind=kind, project=project, summary=summary[:500], opened_at=now, **fields
            )
    except IntegrityError:
        return None
    _announce(event)
    return event


def resolve_alert(key: str, *, now: datetime) -> AlertEvent | None:
    """Close the open episode `key`; returns it if this call closed it, else None."""
    event = AlertEvent.objects.firing().filter(key=key).first()
    if event is None:
        return None
    closed = AlertEvent.objects.filter(pk=event.pk, resolved_at__isnull=True).update(
        resolved_at=now
    )
    if not closed:
        return None  # another evaluator resolved it first
    event.resolved_at = now
    _announce(event)
    return event


def _announce(event: AlertEvent) -> None:
    """Notify webhooks and live pages of an opened or resolved episode (after commit)."""
    from cockpit import alerting, webhooks

    webhooks.notify(event)
    alerting.broadcast_alerts(event)


# --- Evaluation (every minute) -------------------------------------------------------------


def slo_alert_key(slo: Slo, rule: BurnRule) -> str:
    return f"slo:{slo.pk}:{rule.kind}"


def evaluate_slos(*, now: datetime | None = None) -> dict[str, int]:
    """Fire and resolve burn-rate alerts for every SLO. Safe to run twice for one minute."""
    now = now or timezone.now()
    slos = list(Slo.objects.select_related("agent", "agent__project"))
    opened = resolved = 0
    if not slos:
        return {"opened": 0, "resolved": 0}
    thresholds = _latency_thresholds(slos)
    ids = sorted({slo.agent_id for slo in slos})
    counts = {
        name: window_counts(ids, now - length, now, thresholds)
        for name, length in BURN_WINDOWS.items()
    }
    scored = scores.slo_window_counts(
        slos, {name: (now - length, now) for name, length in BURN_WINDOWS.items()}
    )
    empty = WindowCounts()
    for slo in slos:
        rates = {name: burn_rate(slo, c.get(slo.agent_id, empty)) for name, c in counts.items()}
        if slo.pk in scored:
            rates = {name: burn_rate(slo, c) for name, c in scored[slo.pk].items()}
        for rule in BURN_RULES:
            long_rate = rates[_window_name(rule.long)]
            short_rate = rates[_window_name(rule.short)]
            key = slo_alert_key(slo, rule)
            if long_rate > rule.rate and short_rate > rule.rate:
                event = open_alert(
                    key=key,
                    kind=rule.kind,
                    severity=rule.severity,
                    project=slo.agent.project,
                    agent=slo.agent,
                    slo=slo,
                    summary=(
                        f"{slo.agent.name}: {slo.describe()} is burning its error budget at "
                        f"{long_rate:.1f}× ({_window_name(rule.long)}) and {short_rate:.1f}× "
                        f"({_window_name(rule.short)})"
                    ),
                    details={
                        "burn_rates": {k: round(v, 3) for k, v in rates.items()},
                        "rule_rate": rule.rate,
                        "slo": slo.describe(),
                    },
                    now=now,
                )
                opened += event is not None
            else:
                resolved += resolve_alert(key, now=now) is not None
    return {"opened": opened, "resolved": resolved}


def _window_name(length: timedelta) -> str:
    return next(name for name, value in BURN_WINDOWS.items() if value == length)


# --- Demo data ---------------------------------------------------------------------------------

DEMO_SLOS = {
    # agent: [(kind, threshold, target)]
    "support-triage": [(Slo.Kind.SUCCESS_RATE, None, 0.95)],
    "refund-agent": [(Slo.Kind.SUCCESS_RATE, None, 0.9)],
    # Its 2.4.0 release is much slower: about 4 % of runs take over 45 s before it, 30 % after
    # (a burn of 7 against a 4 % budget), so the slow-burn alert fires after the release.
    "research-assistant": [(Slo.Kind.LATENCY_P95, 45_000.0, 0.96)],
    # Its warehouse is slow: most runs take over 3 s, a burn above 14.4, so it breaches its
    # latency SLO and pages.
    "sql-analyst": [(Slo.Kind.LATENCY_P95, 3_000.0, 0.95), (Slo.Kind.SUCCESS_RATE, None, 0.8)],
    "code-reviewer": [(Slo.Kind.COST_PER_SUCCESS, 0.5, 0.99)],
}


def ensure_demo_objectives(project: Project) -> None:
    """Create the demo fleet's SLOs and budgets (idempotent; agents are created if missing)."""
    from cockpit.budgets import ensure_demo_budgets

    for agent_name, objectives in DEMO_SLOS.items():
        agent, _ = Agent.objects.get_or_create(project=project, name=agent_name)
        for kind, threshold, target in objectives:
            Slo.objects.get_or_create(
                agent=agent, kind=kind, defaults={"threshold": threshold, "target": target}
            )
    ensure_demo_budgets(project)
