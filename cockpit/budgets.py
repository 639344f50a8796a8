"""Budgets: spend today and this month against caps, warnings, and the breach action.

A budget caps an agent, a team (the project's agents with that team) or a whole project, daily
and/or monthly, in USD. Days and months follow settings.TIME_ZONE. Each minute
`evaluate_budgets()` opens or resolves a warning episode (spend ≥ warn_percent of a cap) and a
breach episode (spend ≥ the cap). When a breach episode opens and the budget says so, every
active agent it covers is paused through do_pause_agent with the budget as the reason — once
per episode, so an operator who resumes an agent is not overruled a minute later. A new day
(month) resets spend, which resolves the episode.

Pages read `budget_statuses(agents)` / `budget_status(agent)`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from cockpit import rollups
from cockpit.interventions import InterventionError, do_pause_agent
from cockpit.models import AlertEvent, Budget
from cockpit.slo import open_alert, resolve_alert
from traces.models import Agent

logger = logging.getLogger(__name__)

PERIODS = ("daily", "monthly")


@dataclass
class BudgetStatus:
    """One cap of one budget: what was spent in its period so far, and where that stands."""

    budget: Budget
    period: str  # daily | monthly
    cap: Decimal
    spent: Decimal
    period_start: datetime

    @property
    def percent(self) -> float:
        return float(100 * self.spent / self.cap) if self.cap else 0.0

    @property
    def state(self) -> str:
        """ok | warn | breach"""
        if self.percent >= 100:
            return "breach"
        if self.percent >= self.budget.warn_percent:
            return "warn"
        return "ok"

    @property
    def remaining(self) -> Decimal:
        return self.cap - self.spent

    @property
    def cap_per_hour(self) -> Decimal:
        """The cap spread evenly over the period: what a sustainable burn per hour looks like."""
        hours = 24 if self.period == "daily" else 24 * 30
        return self.cap / hours

    @property
    def label(self) -> str:
        return f"{self.budget.target_name}, {self.period}"


def period_start(period: str, now: datetime) -> datetime:
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "monthly":
        start = start.replace(day=1)
    return start


def spend_by_period(agent_ids, periods, now: datetime) -> dict[str, dict[int, Decimal]]:
    """{period: {agent id: cost of its runs started since the period began}}, one query."""
    # The end is a moment past now: a run that started this very instant counts.
    end = now + timedelta(seconds=1)
    windows = {period: (period_start(period, now), end) for period in periods}
    stats = rollups.agent_windows(agent_ids, windows, latency=False, now=end)
    return {
        period: {agent_id: window.cost_usd for agent_id, window in by_agent.items()}
        for period, by_agent in stats.items()
    }


def statuses_for(budgets: list[Budget], *, now: datetime) -> list[BudgetStatus]:
    """A BudgetStatus per cap of `budgets`: at most two queries whatever their number."""
    if not budgets:
        return []
    project_ids = sorted({b.project_id for b in budgets})
    agents = {
        pk: (project_id, team)
        for pk, project_id, team in Agent.objects.filter(project_id__in=project_ids).values_list(
            "pk", "project_id", "team"
        )
    }
    periods = [period for period in PERIODS if any(period in b.caps() for b in budgets)]
    spends = spend_by_period(list(agents), periods, now)
    statuses = []
    for budget in budgets:
        for period, cap in budget.caps().items():
            spent = sum(
                (
                    cost
                    for agent_id, cost in spends[period].items()
                    if _covers(budget, *agents[agent_id], agent_id=agent_id)
                ),
                Decimal(0),
            )
            statuses.append(BudgetStatus(budget, period, cap, spent, period_start(period, now)))
    return statuses


def _covers(budget: Budget, project_id: int, team: str, *, agent_id: int) -> bool:
    if project_id != budget.project_id:
        return False
    if budget.scope == Budget.Scope.AGENT:
        return agent_id == budget.agent_id
    if budget.scope == Budget.Scope.TEAM:
        return team == budget.team
    return True


def budget_statuses(agents, *, now: datetime | None = None) -> dict[int, list[BudgetStatus]]:
    """{agent id: [BudgetStatus, …]} for every budget covering each agent (its own, its
    team's and its project's), in at most three queries whatever the number of agents."""
    now = now or timezone.now()
    agents = list(agents)
    result: dict[int, list[BudgetStatus]] = {agent.pk: [] for agent in agents}
    if not agents:
        return result
    project_ids = {agent.project_id for agent in agents}
    budgets = list(
        Budget.objects.filter(project_id__in=project_ids).select_related("project", "agent")
    )
    for status in statuses_for(budgets, now=now):
        budget = status.budget
        for agent in agents:
            if agent.project_id != budget.project_id:
                continue
            if (
                budget.scope == Budget.Scope.PROJECT
                or (budget.scope == Budget.Scope.AGENT and budget.agent_id == agent.pk)
                or (budget.scope == Budget.Scope.TEAM and budget.team == agent.team)
            ):
                result[agent.pk].append(status)
    return result


def budget_status(agent: Agent, *, now: datetime | None = None) -> list[BudgetStatus]:
    """The statuses of every budget covering one agent (see budget_statuses)."""
    return budget_statuses([agent], now=now)[agent.pk]


def all_budget_statuses(project=None, *, now: datetime | None = None) -> list[BudgetStatus]:
    """Every budget's caps (of one project, or all), for the cost explorer."""
    budgets = Budget.objects.select_related("project", "agent")
    if project is not None:
        budgets = budgets.filter(project=project)
    return statuses_for(list(budgets), now=now or timezone.now())


# --- Evaluation (every minute) -------------------------------------------------------------


def budget_alert_key(budget: Budget, period: str, level: str) -> str:
    return f"budget:{budget.pk}:{period}:{level}"


def evaluate_budgets(*, now: datetime | None = None) -> dict[str, int]:
    """Open and resolve budget episodes; pause agents on a new breach when configured."""
    now = now or timezone.now()
    budgets = list(Budget.objects.select_related("project", "agent"))
    opened = resolved = paused = 0
    for status in statuses_for(budgets, now=now):
        budget, period = status.budget, status.period
        state = status.state
        for level, kind in (
            ("warn", AlertEvent.Kind.BUDGET_WARN),
            ("breach", AlertEvent.Kind.BUDGET_BREACH),
        ):
            key = budget_alert_key(budget, period, level)
            if state != level:
                resolved += resolve_alert(key, now=now) is not None
                continue
            event = open_alert(
                key=key,
                kind=kind,
                severity=AlertEvent.Severity.PAGE
                if level == "breach"
                else AlertEvent.Severity.TICKET,
                project=budget.project,
                agent=budget.agent,
                budget=budget,
                summary=_summary(status),
                details={
                    "period": period,
                    "period_start": status.period_start.isoformat(),
                    "cap_usd": str(status.cap),
                    "spent_usd": str(status.spent.quantize(Decimal("0.0001"))),
                    "percent": round(status.percent, 1),
                    "on_breach": budget.on_breach,
                },
                now=now,
            )
            if event is None:
                continue
            opened += 1
            if level == "breach" and budget.on_breach == Budget.OnBreach.PAUSE:
                paused += pause_for_breach(budget, event, status)
    return {"opened": opened, "resolved": resolved, "paused": paused}


def pause_for_breach(budget: Budget, event: AlertEvent, status: BudgetStatus) -> int:
    """Pause every active agent the budget covers, citing the budget. Returns how many."""
    paused = 0
    for agent in budget.agents().filter(state=Agent.State.ACTIVE):
        try:
            do_pause_agent(agent, None, f"Budget breached: {_summary(status)}", alert_event=event)
        except InterventionError:
            continue  # paused or stopped meanwhile: nothing left to do
        paused += 1
    return paused


def _summary(status: BudgetStatus) -> str:
    return (
        f"{status.budget.target_name} spent ${status.spent:,.2f} of its "
        f"${status.cap:,.2f} {status.period} cap ({status.percent:.0f} %)"
    )


# --- Demo data ---------------------------------------------------------------------------------

DEMO_BUDGETS = {
    # agent: (daily cap, on breach). The self-hosted model has no price, so outbound-email
    # spends nothing; sales-assistant's small cap is hit within minutes and pauses it.
    "sales-assistant": (Decimal("0.25"), Budget.OnBreach.PAUSE),
    "research-assistant": (Decimal("50.00"), Budget.OnBreach.NOTIFY),
}


def ensure_demo_budgets(project) -> None:
    """The demo fleet's budgets (idempotent): one that pauses its agent, a project cap."""
    for agent_name, (daily, on_breach) in DEMO_BUDGETS.items():
        agent, _ = Agent.objects.get_or_create(project=project, name=agent_name)
        Budget.objects.get_or_create(
            project=project,
            scope=Budget.Scope.AGENT,
            agent=agent,
            defaults={"daily_usd": daily, "warn_percent": 80, "on_breach": on_breach},
        )
    Budget.objects.get_or_create(
        project=project,
        scope=Budget.Scope.PROJECT,
        agent=None,
        team="",
        defaults={"monthly_usd": Decimal("2000.00"), "warn_percent": 80},
    )
