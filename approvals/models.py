"""Approval policies, escalation chains, requests, votes and the append-only event log.

A request copies its policy and chain when it is created (policy_snapshot): editing a policy or
chain later never changes a request in flight. Deadlines live on the request; the sweeper
(approvals.engine.sweep) claims due requests with SELECT … FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal

import orjson
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from traces.models import Agent, Project

LEVELS = (1, 2, 3, 4)


class Risk(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}


class Decision(models.TextChoices):
    APPROVE = "approve"
    APPROVE_EDITED = "approve_edited", "approve with edits"
    REJECT = "reject"


def arguments_sha256(arguments) -> str:
    """The hash a decision is bound to: SHA-256 of the arguments as canonical JSON (sorted keys,
    no spaces), so the same arguments always hash the same whatever their key order."""
    return hashlib.sha256(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()


class EscalationChain(models.Model):
    """Who reviews at L1…L4, for how long each, and whom to tell."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    # False: a reviewer decides only at a level they belong to or a later one (an L3 reviewer
    # may take an L1 request; an L1 reviewer may not take an L3 one). True: earlier levels
    # may still decide after an escalation.
    earlier_levels_may_decide = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict:
        return {
            "id": self.pk,
            "name": self.name,
            "earlier_levels_may_decide": self.earlier_levels_may_decide,
            "levels": [level.snapshot() for level in self.levels.order_by("number")],
        }


class EscalationLevel(models.Model):
    chain = models.ForeignKey(EscalationChain, on_delete=models.CASCADE, related_name="levels")
    number = models.PositiveSmallIntegerField(choices=[(n, f"L{n}") for n in LEVELS])
    # Reviewers: members of the group and the people listed. Neither: anyone with the
    # reviewer role.
    reviewer_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    time_budget = models.DurationField(default=timedelta(minutes=15))
    # A reminder goes out when this fraction of the level's budget has passed (0: none).
    remind_at_fraction = models.FloatField(default=0.5)
    webhook_url = models.URLField(max_length=500, blank=True, help_text="Slack-compatible.")
    webhook_secret = models.CharField(max_length=200, blank=True)
    email_to = models.CharField(max_length=500, blank=True, help_text="Comma-separated addresses.")

    class Meta:
        ordering = ["chain", "number"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "number"], name="level_unique_in_chain")
        ]

    def __str__(self) -> str:
        return f"{self.chain} L{self.number}"

    def clean(self):
        if not 0 <= self.remind_at_fraction < 1:
            raise ValidationError({"remind_at_fraction": "A fraction from 0 up to (not) 1."})
        if self.time_budget is not None and self.time_budget <= timedelta(0):
            raise ValidationError({"time_budget": "A level needs some time."})

    def snapshot(self) -> dict:
        return {
            "number": self.number,
            "group": self.reviewer_group.name if self.reviewer_group_id else "",
            "reviewers": sorted(self.reviewers.values_list("username", flat=True)),
            "seconds": int(self.time_budget.total_seconds()),
            "remind_at_fraction": self.remind_at_fraction,
            "webhook_url": self.webhook_url,
            "webhook_secret": self.webhook_secret,
            "email_to": [a.strip() for a in self.email_to.split(",") if a.strip()],
        }


class Policy(models.Model):
    """Which requests need whom: matched on agent, action and argument conditions."""

    class Expiry(models.TextChoices):
        DENY = "deny", "deny (the agent must not act)"
        DENY_AND_ALERT = "deny_and_alert", "deny and raise an alert"

    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every project.",
    )
    name = models.CharField(max_length=100)
    # Lower first; the first enabled policy that matches applies.
    priority = models.IntegerField(default=100)
    enabled = models.BooleanField(default=True)
    agent_name = models.CharField(max_length=200, blank=True, help_text="Empty: any agent.")
    action = models.CharField(max_length=200, blank=True, help_text="Empty: any action.")
    # [{"field": "amount", "op": ">", "value": 1000}, …], all must hold. A field is "amount",
    # "currency" or an argument name (dots reach into nested objects: "customer.tier").
    conditions = models.JSONField(default=list, blank=True)
    risk_tier = models.CharField(max_length=8, choices=Risk.choices, default=Risk.HIGH)
    allowed_decisions = models.JSONField(default=list, blank=True)
    chain = models.ForeignKey(EscalationChain, on_delete=models.PROTECT, related_name="policies")
    approvals_required = models.PositiveSmallIntegerField(default=1)
    owner_may_approve = models.BooleanField(default=False)
    # Expiry is always a denial (silence is never approval); a policy chooses only whether an
    # expiry also raises an alert.
    on_expiry = models.CharField(max_length=15, choices=Expiry.choices, default=Expiry.DENY)

    class Meta:
        ordering = ["priority", "id"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from approvals.policies import check_conditions

        errors = {}
        try:
            check_conditions(self.conditions)
        except ValueError as error:
            errors["conditions"] = str(error)
        decisions = self.allowed_decisions or [d.value for d in Decision]
        if not set(decisions) <= set(Decision.values) or Decision.REJECT not in decisions:
            errors["allowed_decisions"] = (
                f"A list drawn from {', '.join(Decision.values)}; reject is always allowed."
            )
        if not 1 <= self.approvals_required <= 10:
            errors["approvals_required"] = "From 1 to 10 distinct reviewers."
        if errors:
            raise ValidationError(errors)

    def snapshot(self) -> dict:
        return {
            "id": self.pk,
            "name": self.name,
            "risk_tier": self.risk_tier,
            "allowed_decisions": self.allowed_decisions or list(Decision.values),
            "approvals_required": self.approvals_required,
            "owner_may_approve": self.owner_may_approve,
            "on_expiry": self.on_expiry,
            "conditions": self.conditions,
        }


class ApprovalRequestQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=ApprovalRequest.Status.PENDING)


class ApprovalRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="approval_requests")
    idempotency_key = models.CharField(max_length=200)
    action = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    arguments_sha256 = models.CharField(max_length=64)
    # What the agent may do: the arguments, or a reviewer's edit of them.
    effective_arguments = models.JSONField(default=dict)
    effective_sha256 = models.CharField(max_length=64)
    summary = models.CharField(max_length=500, blank=True)
    rationale = models.TextField(blank=True)  # the agent's own words, untrusted
    stated_risk = models.CharField(max_length=8, choices=Risk.choices, blank=True)
    risk_tier = models.CharField(max_length=8, choices=Risk.choices)
    risk_summary = models.TextField(blank=True)  # the platform's assessment
    amount = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    callback_secret = models.CharField(max_length=64, blank=True)
    policy_snapshot = models.JSONField(default=dict)
    chain_snapshot = models.JSONField(default=dict)

    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    level = models.PositiveSmallIntegerField(default=1)
    level_started_at = models.DateTimeField(default=timezone.now)
    level_due_at = models.DateTimeField()
    remind_at = models.DateTimeField(null=True, blank=True)
    # The sweeper's next look: the reminder or the level deadline, whichever comes first.
    next_action_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=15, choices=Decision.choices, blank=True)
    comment = models.TextField(blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["level_due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"], name="approval_unique_idempotency_key"
            )
        ]
        indexes = [
            # Sweeper: WHERE status = 'pending' AND next_action_at <= now ORDER BY next_action_at
            # FOR UPDATE SKIP LOCKED; and the queue page, pending requests by deadline.
            models.Index(
                fields=["next_action_at"],
                name="approval_pending_due_idx",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["level_due_at", "id"],
                name="approval_pending_queue_idx",
                condition=Q(status="pending"),
            ),
            # An agent's recent approval history on the request page.
            models.Index(fields=["agent", "-created_at"], name="approval_agent_recent_idx"),
            # Health page and CSV export: decided requests by decision time.
            models.Index(fields=["decided_at"], name="approval_decided_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def was_edited(self) -> bool:
        return self.effective_sha256 != self.arguments_sha256

    @property
    def level_count(self) -> int:
        return len(self.chain_snapshot.get("levels", [])) or 1

    def level_snapshot(self, number: int | None = None) -> dict:
        number = number or self.level
        for level in self.chain_snapshot.get("levels", []):
            if level["number"] == number:
                return level
        return {}

    @property
    def approvals_required(self) -> int:
        return int(self.policy_snapshot.get("approvals_required", 1))

    @property
    def allowed_decisions(self) -> list[str]:
        return list(self.policy_snapshot.get("allowed_decisions", Decision.values))

    @property
    def amount_display(self) -> str:
        if self.amount is None:
            return ""
        amount = Decimal(str(self.amount)).quantize(Decimal("0.01"))
        return f"{amount:,} {self.currency}".strip()


class ApprovalVote(models.Model):
    """One reviewer's decision on a request; with M-of-N several are needed to approve."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    decision = models.CharField(max_length=15, choices=Decision.choices)
    level = models.PositiveSmallIntegerField()
    # The arguments the reviewer saw (hash) and, for an edit, what they approved instead.
    seen_sha256 = models.CharField(max_length=64)
    edited_arguments = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Seconds from the reviewer first opening the request to this vote (rubber-stamp check).
    review_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "reviewer"], name="vote_once_per_reviewer")
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} #{self.request_id}"


class AppendOnlyError(Exception):
    pass


class ApprovalEvent(models.Model):
    """The audit log of a request: appended, never updated. save() and delete() refuse, and on
    PostgreSQL a trigger refuses UPDATE (rows go only with their request, by cascade)."""

    class Kind(models.TextChoices):
        CREATED = "created"
        REJECTED_AT_ONCE = "rejected_at_once", "rejected at once"
        VIEWED = "viewed"
        VOTED = "voted"
        DECIDED = "decided"
        REMINDED = "reminded"
        ESCALATED = "escalated"
        EXPIRED = "expired"
        CANCELLED = "cancelled"
        LATE_DECISION_IGNORED = "late_decision_ignored", "late decision ignored"
        NOTIFIED = "notified"
        FROZEN = "frozen"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=25, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    level = models.PositiveSmallIntegerField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["request", "at"], name="approval_event_request_idx")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.kind} @ {self.at:%H:%M:%S}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Approval events are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Approval events are never deleted.")
