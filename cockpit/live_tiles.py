"""The fleet page's tiles, and pushing them live when new traffic is folded into rollups.

`fleet_snapshot()` is everything the fleet page shows, read from rollups (plus SLO and budget
statuses and the alerts firing). After each fold pass cockpit.rollups sends `rollups_folded`
with the agents it touched; `push_fleet_tiles` renders those agents' tiles, the fleet totals and
the alerts with the very fragment templates the page includes, and sends them to the "fleet"
topic, where htmx swaps each by id. Each folded agent's page gets a tick that makes its charts
and summary refresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count
from django.template.loader import render_to_string
from django.utils import timezone

from approvals.models import ApprovalRequest
from cockpit import realtime, rollups
from cockpit.budgets import BudgetStatus, budget_statuses
from cockpit.rollups import WindowStats
from cockpit.slo import SloStatus, firing_alerts, slo_statuses
from incidents.models import Incident
from traces.models import Agent

logger = logging.getLogger(__name__)

# Tiles show the last hour; runs/min is read over the last five minutes, which is "now".
HOUR_WINDOW = timedelta(hours=1)
RATE_WINDOW = timedelta(minutes=5)
# A fold that touches an agent first seen this recently makes open fleet pages re-fetch whole,
# since they have no tile to swap for it yet.
NEW_AGENT_WINDOW = timedelta(minutes=2)
ALERTS_SHOWN = 20


@dataclass
class SloBadge:
    """The tile's SLO line: the agent's SLO with the least error budget left."""

    status: SloStatus

    @property
    def state(self) -> str:
        if self.status.alert:
            return "error"
        if not self.status.met or self.status.error_budget_remaining <= 0:
            return "error"
        if self.status.error_budget_remaining < 0.25:
            return "warn"
        return "ok"

    @property
    def state_label(self) -> str:
        if self.status.alert:
            return "burning"
        return {"ok": "met", "warn": "at risk", "error": "breached"}[self.state]

    @property
    def kind_label(self) -> str:
        return self.status.slo.get_kind_display()

    @property
    def description(self) -> str:
        return self.status.description

    @property
    def budget_left_pct(self) -> float:
        return max(self.status.error_budget_percent, 0.0)


@dataclass
class Tile:
    agent: Agent
    hour: WindowStats
    recent: WindowStats
    cost_today: Decimal = Decimal(0)
    daily_budget: BudgetStatus | None = None
    slos: list[SloStatus] = field(default_factory=list)
    alerts: int = 0
    pending_approvals: int = 0
    open_incidents: int = 0

    @property
    def runs_per_min(self) -> float:
        return self.recent.runs_per_minute

    @property
    def budget_pct(self) -> float:
        return self.daily_budget.percent if self.daily_budget else 0.0

    @property
    def budget_bar(self) -> int:
        return min(round(self.budget_pct), 100)

    @property
    def warn_percent(self) -> int:
        return self.daily_budget.budget.warn_percent if self.daily_budget else 100

    @property
    def slo(self) -> SloBadge | None:
        if not self.slos:
            return None
        return SloBadge(min(self.slos, key=lambda s: s.error_budget_remaining))


@dataclass
class FleetTotals:
    hour: WindowStats
    recent: WindowStats
    cost_today: Decimal
    paused: int
    stopped: int

    @property
    def runs_per_min(self) -> float:
        return self.recent.runs_per_minute


def start_of_day(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def _tightest_daily(statuses: list[BudgetStatus]) -> BudgetStatus | None:
    """Of the daily caps covering an agent, the one closest to its limit."""
    daily = [status for status in statuses if status.period == "daily"]
    return max(daily, key=lambda status: status.percent) if daily else None


def build_tiles(agents: list[Agent], now: datetime, alerts: list) -> list[Tile]:
    """Tiles for `agents`: one rollup read plus the SLO and budget reads, however many."""
    ids = [agent.pk for agent in agents]
    windows = {
        "hour": (now - HOUR_WINDOW, now),
        "recent": (now - RATE_WINDOW, now),
        "today": (start_of_day(now), now),
    }
    # One query; runs per minute and today's spend need counts only: no histograms to merge.
    stats = rollups.agent_windows(ids, windows, counts_only=("recent", "today"), now=now)
    hour, recent, today = stats["hour"], stats["recent"], stats["today"]
    slos = slo_statuses(agents, now=now)
    budgets = budget_statuses(agents, now=now)
    pending = dict(
        ApprovalRequest.objects.pending()
        .filter(agent_id__in=ids)
        .values_list("agent_id")
        .annotate(count=Count("id"))
        .order_by()
    )
    incidents = Incident.objects.open_counts(ids)
    alert_counts: dict[int, int] = {}
    for alert in alerts:
        if alert.agent_id:
            alert_counts[alert.agent_id] = alert_counts.get(alert.agent_id, 0) + 1
    return [
        Tile(
            agent=agent,
            hour=hour[agent.pk],
            recent=recent[agent.pk],
            cost_today=today[agent.pk].cost_usd,
            daily_budget=_tightest_daily(budgets[agent.pk]),
            slos=slos[agent.pk],
            alerts=alert_counts.get(agent.pk, 0),
            pending_approvals=pending.get(agent.pk, 0),
            open_incidents=incidents.get(agent.pk, 0),
        )
        for agent in agents
    ]


def totals_of(tiles: list[Tile]) -> FleetTotals:
    seconds_hour = HOUR_WINDOW.total_seconds()
    hour, recent = WindowStats(seconds=seconds_hour), WindowStats(seconds=RATE_WINDOW.seconds)
    for tile in tiles:
        hour.add(tile.hour.__dict__)
        recent.add(tile.recent.__dict__)
    # add() sums counters and histograms; the window length stays the tiles' own.
    hour.seconds, recent.seconds = tiles[0].hour.seconds, tiles[0].recent.seconds
    return FleetTotals(
        hour=hour,
        recent=recent,
        cost_today=sum((tile.cost_today for tile in tiles), Decimal(0)),
        paused=sum(tile.agent.state == Agent.State.PAUSED for tile in tiles),
        stopped=sum(tile.agent.state == Agent.State.STOPPED for tile in tiles),
    )


def fleet_snapshot(now: datetime | None = None) -> dict:
    """Everything the fleet page shows, in a fixed number of queries whatever the fleet size."""
    now = now or timezone.now()
    agents = list(Agent.objects.select_related("project").order_by("project__name", "name"))
    if not agents:
        return {"tiles": [], "alerts": [], "now": now}
    alerts = list(firing_alerts()[:ALERTS_SHOWN])
    tiles = build_tiles(agents, now, alerts)
    return {
        "tiles": tiles,
        "totals": totals_of(tiles),
        "agents_live": sum(1 for tile in tiles if tile.hour.runs),
        "alerts": alerts,
        "now": now,
    }


def render_fleet_update(agent_ids, now: datetime | None = None) -> str:
    """The websocket message for a fold: the touched agents' tiles, totals and alerts."""
    snapshot = fleet_snapshot(now)
    touched = set(agent_ids)
    parts = [
        render_to_string("cockpit/_fleet_tile.html", {"tile": tile})
        for tile in snapshot["tiles"]
        if tile.agent.pk in touched
    ]
    if snapshot["tiles"]:
        parts.append(render_to_string("cockpit/_fleet_totals.html", snapshot))
        parts.append(render_to_string("cockpit/_fleet_alerts.html", snapshot))
    return "\n".join(parts)


def push_fleet_tiles(sender=None, agent_ids=(), **kwargs) -> None:
    """rollups_folded receiver: push fresh tiles to the fleet page and ticks to agent pages."""
    if not agent_ids:
        return
    try:
        now = timezone.now()
        realtime.send_fragment("fleet", render_fleet_update(agent_ids, now))
        if Agent.objects.filter(pk__in=agent_ids, first_seen_at__gte=now - NEW_AGENT_WINDOW):
            realtime.send_refresh("fleet", "fleet-live")
        for agent_id in agent_ids:
            realtime.send_fragment(f"agent.{agent_id}", render_agent_tick(now))
    except Exception:  # noqa: BLE001 - a lost live update is covered by the pages' polling
        logger.warning("Could not push fleet tiles", exc_info=True)


def render_agent_tick(now: datetime) -> str:
    """The agent page's tick: swapping it in makes static/cockpit/charts.js refetch figures,
    and the summary above the charts re-fetches itself (it listens for live-refresh)."""
    return render_to_string("cockpit/_agent_tick.html", {"now": now})
