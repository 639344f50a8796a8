"""SLOs, alert events, budgets, webhooks and the interventions audit trail.

Alert events are episodes: one row per firing, closed by setting resolved_at. At most one open
episode exists per key (a partial unique index), so two evaluators racing on the same minute
open it once, and resolving is a conditional UPDATE that exactly one of them wins.
Interventions are an append-only audit log: rows are inserted, never updated or deleted.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from traces.models import Agent, Project


class Slo(models.Model):
    """An objective for one agent over a rolling window of runs.

    - success_rate: a run is good when it succeeded; target is the good fraction (0.99).
    - latency_p95 / latency_p99: a run is good when it finished within `threshold` ms. With
      target 0.95 (0.99) this reads "p95 (p99) under threshold"; the target may be stricter.
    - cost_per_success: cost over the window divided by successful runs, at most `threshold`
      USD. It is a ratio, not a count of good runs: its burn rate is actual / threshold.
    """

    class Kind(models.TextChoices):
        SUCCESS_RATE = "success_rate", "success rate"
        LATENCY_P95 = "latency_p95", "p95 latency"
        LATENCY_P99 = "latency_p99", "p99 latency"
        COST_PER_SUCCESS = "cost_per_success", "cost per successful run"
        SCORE_MEAN = "score_mean", "mean score"  # of score_name, at least target (0..1 scores)

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="slos")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Milliseconds for latency kinds, USD for cost_per_success, unused for success_rate.
    threshold = models.FloatField(null=True, blank=True)
    target = models.FloatField(default=0.99)
    window_days = models.PositiveSmallIntegerField(default=28)
    score_name = models.CharField(max_length=100, blank=True)  # score_mean: which score
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent_id", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "kind"], name="slo_unique_kind_per_agent"),
            models.CheckConstraint(
                condition=Q(target__gt=0) & Q(target__lt=1), name="slo_target_between_0_and_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} {self.describe()}"

    def describe(self) -> str:
        if self.kind == self.Kind.SUCCESS_RATE:
            return f"success rate ≥ {self.target:.2%} over {self.window_days} d"
        if self.kind == self.Kind.COST_PER_SUCCESS:
            return f"cost per successful run ≤ ${self.threshold:g} over {self.window_days} d"
        if self.kind == self.Kind.SCORE_MEAN:
            return f"mean {self.score_name} ≥ {self.target:g} over {self.window_days} d"
        percentile = "p95" if self.kind == self.Kind.LATENCY_P95 else "p99"
        return (
            f"{percentile} latency ≤ {self.threshold:g} ms "
            f"({self.target:.2%} of runs) over {self.window_days} d"
        )

    def clean(self) -> None:
        if self.kind == self.Kind.SCORE_MEAN and not self.score_name:
            raise ValidationError({"score_name": "Name the score this SLO reads."})
        if self.kind not in (self.Kind.SUCCESS_RATE, self.Kind.SCORE_MEAN) and not self.threshold:
            raise ValidationError({"threshold": "This kind of SLO needs a threshold above 0."})

    @property
    def error_budget(self) -> float:
        """The fraction of runs allowed to be bad."""
        return 1.0 - self.target


class AlertEventQuerySet(models.QuerySet):
    def firing(self):
        return self.filter(resolved_at__isnull=True)


class AlertEvent(models.Model):
    """One alert episode: opened when its condition starts to hold, resolved when it stops."""

    class Kind(models.TextChoices):
        SLO_FAST_BURN = "slo_fast_burn", "SLO fast burn"
        SLO_SLOW_BURN = "slo_slow_burn", "SLO slow burn"
        BUDGET_WARN = "budget_warn", "budget warning"
        BUDGET_BREACH = "budget_breach", "budget breached"
        APPROVALS = "approvals", "approval queue"
        RELEASE_REGRESSION = "release_regression", "regression after release"
        COHORT_DEGRADATION = "cohort_degradation", "cohort degradation"
        BEHAVIOUR_DRIFT = "behaviour_drift", "behaviour drift"

    class Severity(models.TextChoices):
        PAGE = "page"
        TICKET = "ticket"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=6, choices=Severity.choices, default=Severity.TICKET)
    # What the episode is about, e.g. "slo:12:fast" or "budget:3:daily:2026-05-01:breach".
    key = models.CharField(max_length=200)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_events"
    )
    slo = models.ForeignKey(
        Slo, null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_events"
    )
    budget = models.ForeignKey(
        "Budget", null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_events"
    )
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = AlertEventQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One open episode per key: opening twice is an IntegrityError, not a duplicate.
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_key"
            )
        ]
        indexes = [
            # Fleet page: the alerts firing now (resolved_at IS NULL), newest first.
            models.Index(
                fields=["-opened_at"],
                name="alert_firing_idx",
                condition=Q(resolved_at__isnull=True),
            ),
            # Agent page: an agent's alert history.
            models.Index(fields=["agent", "-opened_at"], name="alert_agent_idx"),
        ]

    def __str__(self) -> str:
        return self.summary

    @property
    def is_firing(self) -> bool:
        return self.resolved_at is None


class Budget(models.Model):
    """Daily and monthly USD caps on an agent, a team (of one project) or a whole project."""

    class Scope(models.TextChoices):
        AGENT = "agent"
        TEAM = "team"
        PROJECT = "project"

    class OnBreach(models.TextChoices):
        NOTIFY = "notify"
        PAUSE = "pause"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=7, choices=Scope.choices)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.CharField(max_length=100, blank=True)
    daily_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    monthly_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    warn_percent = models.PositiveSmallIntegerField(default=80)
    on_breach = models.CharField(max_length=6, choices=OnBreach.choices, default=OnBreach.NOTIFY)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project_id", "scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="agent", agent__isnull=False, team="")
                    | Q(scope="team", agent__isnull=True) & ~Q(team="")
                    | Q(scope="project", agent__isnull=True, team="")
                ),
                name="budget_scope_matches_target",
            ),
            models.CheckConstraint(
                condition=Q(warn_percent__gte=1) & Q(warn_percent__lte=100),
                name="budget_warn_percent_1_to_100",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target_name} budget"

    @property
    def target_name(self) -> str:
        if self.scope == self.Scope.AGENT:
            return f"agent {self.agent.name}"
        if self.scope == self.Scope.TEAM:
            return f"team {self.team}"
        return f"project {self.project.name}"

    def caps(self) -> dict[str, Decimal]:
        """{"daily": cap, "monthly": cap} for the caps that are set."""
        return {
            period: cap
            for period, cap in (("daily", self.daily_usd), ("monthly", self.monthly_usd))
            if cap is not None
        }

    def agents(self):
        """The agents this budget covers (the ones a breach pauses)."""
        agents = Agent.objects.filter(project_id=self.project_id)
        if self.scope == self.Scope.AGENT:
            return agents.filter(pk=self.agent_id)
        if self.scope == self.Scope.TEAM:
            return agents.filter(team=self.team)
        return agents


class Webhook(models.Model):
    """Where alert notifications go: a Slack-compatible incoming webhook, or any HTTPS endpoint."""

    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhooks",
        help_text="Empty: alerts of every project.",
    )
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # Signs every delivery (HMAC-SHA256): the receiver checks it came from this cockpit.
    secret = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after the last retry

    # A configured webhook, or (webhook empty) a one-off target such as an approval request's
    # callback or an escalation level's Slack hook, with its own url and secret.
    webhook = models.ForeignKey(
        Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=200, blank=True)
    # What the delivery is about when it is not an alert, e.g. "approval:12:decided".
    topic = models.CharField(max_length=100, blank=True)
    alert_event = models.ForeignKey(
        AlertEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    # The exact JSON body sent (and signed) on every attempt.
    body = models.TextField()
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.webhook or self.topic} #{self.pk} {self.status}"

    @property
    def target_url(self) -> str:
        return self.webhook.url if self.webhook_id else self.url

    @property
    def signing_secret(self) -> str:
        return self.webhook.secret if self.webhook_id else self.secret


class AgentControl(models.Model):
    """The knobs an operator set on an agent; agents read them at /api/v1/agents/<name>/control.

    The agent's state (active, paused, stopped) and its reason live on traces.Agent itself.
    """

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="control")
    max_cost_per_run_usd = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True
    )
    downgrade_model = models.CharField(max_length=200, blank=True)
    max_steps = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    OVERRIDE_FIELDS = ("max_cost_per_run_usd", "downgrade_model", "max_steps")

    def __str__(self) -> str:
        return f"{self.agent} control"

    def overrides(self) -> dict:
        """The overrides that are set, JSON-ready (a cost as a decimal string)."""
        values = {}
        if self.max_cost_per_run_usd is not None:
            values["max_cost_per_run_usd"] = str(self.max_cost_per_run_usd)
        if self.downgrade_model:
            values["downgrade_model"] = self.downgrade_model
        if self.max_steps is not None:
            values["max_steps"] = self.max_steps
        return values


class InterventionQuerySet(models.QuerySet):
    def for_agent(self, agent: Agent):
        return self.filter(agent=agent)


class Intervention(models.Model):
    """Audit: who changed an agent's state or overrides, when and why. Append-only."""

    class Action(models.TextChoices):
        PAUSE = "pause"
        RESUME = "resume"
        STOP = "stop"
        OVERRIDE = "override"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="interventions")
    # Null when the cockpit itself acted (a budget breach pausing an agent).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    reason = models.CharField(max_length=1000)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    alert_event = models.ForeignKey(
        AlertEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)

    objects = InterventionQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["agent", "-at"], name="intervention_agent_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="intervention_has_reason")
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.agent} by {self.actor}"

    def save(self, *args, **kwargs):
        # The audit trail is never rewritten: a row, once written, stays as it was.
        if self.pk is not None:
            raise ValueError("Interventions are append-only; record a new one instead.")
        super().save(*args, **kwargs)

    @property
    def actor(self) -> str:
        return self.user.get_username() if self.user_id else "cockpit"
