"""Queue health: how fast requests are decided, how often they escalate or expire, and how each
reviewer decides — with a warning when someone looks like they approve without reading.

Everything is computed from requests closed (decided_at) and votes cast in a window ending now.
Percentiles interpolate linearly between the closest ranks (numpy's default): the p90 of
1…10 is 9.1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, Exists, Min, OuterRef, Q
from django.utils import timezone

from approvals.models import (
    LEVELS,
    ApprovalEvent,
    ApprovalRequest,
    ApprovalVote,
    Decision,
    Risk,
)
from cockpit import charts

# A reviewer "looks like rubber-stamping" with at least this many votes in the window, nearly
# all approvals, decided faster than anyone can read a request.
RUBBER_STAMP_MIN_VOTES = 10
RUBBER_STAMP_APPROVE_RATE = 0.95
RUBBER_STAMP_MEDIAN_SECONDS = 10.0

Status = ApprovalRequest.Status


def percentile(values: list[float], fraction: float) -> float | None:
    """The fraction-th percentile (0..1), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Timing:
    """Time from request to decision, in seconds."""

    label: str
    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, label: str, seconds: list[float]) -> Timing:
        return cls(label, len(seconds), percentile(seconds, 0.5), percentile(seconds, 0.9))

    # In milliseconds for the pages' duration filter (850 ms, 41.2 s, 3m 05s).
    @property
    def median_ms(self) -> float | None:
        return None if self.median is None else self.median * 1000

    @property
    def p90_ms(self) -> float | None:
        return None if self.p90 is None else self.p90 * 1000


@dataclass(frozen=True)
class ReviewerStats:
    username: str
    votes: int
    approvals: int
    edits: int
    rejections: int
    median_review_seconds: float | None

    @property
    def approve_rate(self) -> float:
        return self.approvals / self.votes if self.votes else 0.0

    @property
    def rubber_stamping(self) -> bool:
        return (
            self.votes >= RUBBER_STAMP_MIN_VOTES
            and self.approve_rate >= RUBBER_STAMP_APPROVE_RATE
            and self.median_review_seconds is not None
            and self.median_review_seconds < RUBBER_STAMP_MEDIAN_SECONDS
        )


@dataclass
class QueueHealth:
    since: datetime
    until: datetime
    closed: int = 0  # requests closed in the window (agent-paused refusals left out)
    reviewed: int = 0  # closed by reviewers' votes
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    expired: int = 0
    cancelled: int = 0
    frozen: int = 0  # rejected without a vote (an incident froze the agent's requests)
    escalated: int = 0
    overall: Timing = field(default_factory=lambda: Timing.of("all", []))
    by_level: list[Timing] = field(default_factory=list)
    by_risk: list[Timing] = field(default_factory=list)
    reviewers: list[ReviewerStats] = field(default_factory=list)
    per_day: dict[date, Counter] = field(default_factory=dict)
    pending: int = 0
    overdue: int = 0
    oldest_pending_at: datetime | None = None

    @property
    def escalated_rate(self) -> float | None:
        return self.escalated / self.closed if self.closed else None

    @property
    def expired_rate(self) -> float | None:
        return self.expired / self.closed if self.closed else None

    @property
    def rubber_stampers(self) -> list[ReviewerStats]:
        return [reviewer for reviewer in self.reviewers if reviewer.rubber_stamping]


def queue_health(days: int = 30, *, now: datetime | None = None) -> QueueHealth:
    now = now or timezone.now()
    health = QueueHealth(since=now - timedelta(days=days), until=now)
    _closed_requests(health)
    _reviewers(health)
    pending = ApprovalRequest.objects.pending().aggregate(
        count=Count("id"),
        overdue=Count("id", filter=Q(level_due_at__lt=now)),
        oldest=Min("created_at"),
    )
    health.pending, health.overdue = pending["count"], pending["overdue"]
    health.oldest_pending_at = pending["oldest"]
    return health


def _closed_requests(health: QueueHealth) -> None:
    rows = (
        ApprovalRequest.objects.filter(decided_at__gte=health.since, decided_at__lte=health.until)
        # Requests of a paused agent are refused at creation: nobody reviewed them.
        .exclude(status=Status.REJECTED, decision="")
        .annotate(
            was_escalated=Exists(
                ApprovalEvent.objects.filter(
                    request=OuterRef("pk"), kind=ApprovalEvent.Kind.ESCALATED
                )
            ),
            was_voted=Exists(ApprovalVote.objects.filter(request=OuterRef("pk"))),
        )
        .values_list(
            "status",
            "decision",
            "level",
            "risk_tier",
            "created_at",
            "decided_at",
            "was_escalated",
            "was_voted",
        )  # fmt: skip
    )
    by_level: dict[int, list[float]] = defaultdict(list)
    by_risk: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    per_day: dict[date, Counter] = {}
    for status, decision, level, risk, created, decided, escalated, voted in rows:
        health.closed += 1
        health.escalated += escalated
        day = per_day.setdefault(timezone.localdate(decided), Counter())
        if status == Status.EXPIRED:
            health.expired += 1
            day["expired"] += 1
        elif status == Status.CANCELLED:
            health.cancelled += 1
            day["cancelled"] += 1
        elif not voted:
            health.frozen += 1
            day["rejected"] += 1
        else:
            health.reviewed += 1
            seconds = (decided - created).total_seconds()
            every.append(seconds)
            by_level[level].append(seconds)
            by_risk[risk].append(seconds)
            if status == Status.REJECTED:
                health.rejected += 1
                day["rejected"] += 1
            elif decision == Decision.APPROVE_EDITED:
                health.edited += 1
                day["edited"] += 1
            else:
                health.approved += 1
                day["approved"] += 1
    health.overall = Timing.of("all", every)
    health.by_level = [Timing.of(f"L{n}", by_level[n]) for n in LEVELS]
    health.by_risk = [Timing.of(risk.value, by_risk[risk.value]) for risk in Risk]
    health.per_day = dict(sorted(per_day.items()))


def _reviewers(health: QueueHealth) -> None:
    votes = ApprovalVote.objects.filter(
        created_at__gte=health.since, created_at__lte=health.until
    ).values_list("reviewer__username", "decision", "review_seconds")
    decisions: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, list[float]] = defaultdict(list)
    for username, decision, review_seconds in votes:
        decisions[username][decision] += 1
        if review_seconds is not None:
            seconds[username].append(review_seconds)
    health.reviewers = sorted(
        (
            ReviewerStats(
                username=username,
                votes=sum(counts.values()),
                approvals=counts[Decision.APPROVE] + counts[Decision.APPROVE_EDITED],
                edits=counts[Decision.APPROVE_EDITED],
                rejections=counts[Decision.REJECT],
                median_review_seconds=percentile(seconds[username], 0.5),
            )
            for username, counts in decisions.items()
        ),
        key=lambda reviewer: (not reviewer.rubber_stamping, -reviewer.votes, reviewer.username),
    )


# --- Charts ------------------------------------------------------------------------------------


def figures(health: QueueHealth) -> dict[str, dict]:
    """The health page's charts, keyed by the id of their <script> data block."""
    days = list(health.per_day)
    outcomes = [
        ("approved", charts.GREEN),
        ("edited", charts.BLUE),
        ("rejected", charts.RED),
        ("expired", charts.AMBER),
        ("cancelled", charts.SLATE),
    ]
    per_day = {
        "data": [
            {
                "type": "bar",
                "name": name,
                "x": days,
                "y": [health.per_day[day][name] for day in days],
                "marker": {"color": color},
            }
            for name, color in outcomes
        ],
        "layout": {**charts.base_layout("requests"), "barmode": "stack", "hovermode": "x"},
    }
    per_day["layout"]["xaxis"] = {
        **per_day["layout"]["xaxis"],
        "range": [health.since.date(), health.until.date() + timedelta(days=1)],
    }
    levels = [timing for timing in health.by_level if timing.count]
    by_level = {
        "data": [
            {
                "type": "bar",
                "name": name,
                "x": [timing.label for timing in levels],
                "y": [_minutes(getattr(timing, name)) for timing in levels],
                "marker": {"color": color},
            }
            for name, color in (("median", charts.BLUE), ("p90", charts.AMBER))
        ],
        "layout": {
            **charts.base_layout("minutes"),
            "barmode": "group",
            "hovermode": "x",
            # Few categories (at most four levels): keep the bars from filling the chart.
            "bargap": 0.45,
        },
    }
    by_level["layout"]["xaxis"] = {"type": "category", "linecolor": "#cbd5e1"}
    return {"chart-outcomes-per-day": per_day, "chart-time-by-level": by_level}


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 2)
