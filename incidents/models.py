"""Incidents: severities, the status machine, roles, the timeline, trace links, tool effects,
auto-open rules, postmortems and action items.

The status machine lives on Incident (`allowed_next`, `check_transition`); the mutations that
fan out (timeline event, broadcast) live in incidents.actions as do_* functions, which views
and signal receivers call.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from cockpit.models import AlertEvent
from traces.models import Agent, Project, Run


class Severity(models.IntegerChoices):
    SEV1 = 1, "SEV1"
    SEV2 = 2, "SEV2"
    SEV3 = 3, "SEV3"
    SEV4 = 4, "SEV4"


# What each severity means, shown on the open form and the incident page.
SEVERITY_CRITERIA = {
    Severity.SEV1: (
        "Critical: customers or money harmed now, irreversible actions taken, data exposed "
        "outside the company, or a core agent down for everyone. All hands, page now."
    ),
    Severity.SEV2: (
        "Major: an agent misbehaves for many users or runs away with spend; reversible harm, "
        "or a large part of the fleet degraded. Page the on-call commander."
    ),
    Severity.SEV3: (
        "Minor: degraded quality, latency or cost for some users; a workaround exists. "
        "Handle in working hours."
    ),
    Severity.SEV4: (
        "Low: a near miss, a guardrail that caught a problem, or a cosmetic fault. "
        "Record and learn."
    ),
}

# Default due dates of action items, by the incident's severity.
ACTION_ITEM_DUE_DAYS = {Severity.SEV1: 7, Severity.SEV2: 14, Severity.SEV3: 30, Severity.SEV4: 60}
# Severities whose incidents cannot close without a published postmortem.
POSTMORTEM_REQUIRED = frozenset({Severity.SEV1, Severity.SEV2})


class FailureClass(models.TextChoices):
    REASONING = "reasoning", "reasoning"
    TOOL = "tool", "tool"
    COORDINATION = "coordination", "coordination"
    COST = "cost", "cost / runaway"
    POLICY = "policy", "policy / authority"
    INJECTION = "injection", "injection / poisoning"
    DATA_EXPOSURE = "data_exposure", "data exposure"
    HUMAN_OVERSIGHT = "human_oversight", "human oversight"


class Status(models.TextChoices):
    TRIAGE = "triage", "triage"
    ACTIVE = "active", "active"
    MITIGATED = "mitigated", "mitigated"
    RESOLVED = "resolved", "resolved"
    POSTMORTEM = "postmortem", "postmortem"
    CLOSED = "closed", "closed"
    DECLINED = "declined", "declined"
    CANCELLED = "cancelled", "cancelled"


# The status machine: every allowed move, no skipping. Moving back to ACTIVE (or TRIAGE from
# DECLINED) is a reopen. RESOLVED → CLOSED is allowed only where no postmortem is required.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Status.TRIAGE: (Status.ACTIVE, Status.DECLINED, Status.CANCELLED),
    Status.ACTIVE: (Status.MITIGATED, Status.CANCELLED),
    Status.MITIGATED: (Status.RESOLVED, Status.ACTIVE),
    Status.RESOLVED: (Status.POSTMORTEM, Status.CLOSED, Status.ACTIVE),
    Status.POSTMORTEM: (Status.CLOSED, Status.ACTIVE),
    Status.CLOSED: (Status.ACTIVE,),
    Status.DECLINED: (Status.TRIAGE,),
    Status.CANCELLED: (),
}
# The named timestamp each status sets when entered.
STATUS_TIMESTAMP = {
    Status.ACTIVE: "acknowledged_at",
    Status.MITIGATED: "mitigated_at",
    Status.RESOLVED: "resolved_at",
    Status.POSTMORTEM: "postmortem_at",
    Status.CLOSED: "closed_at",
    Status.DECLINED: "closed_at",
    Status.CANCELLED: "closed_at",
}
# In order: a reopen clears the ones after the status it returns to.
NAMED_TIMESTAMPS = (
    "started_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "postmortem_at",
    "closed_at",
)
OPEN_STATUSES = (Status.TRIAGE, Status.ACTIVE, Status.MITIGATED)
ENDED_STATUSES = (Status.RESOLVED, Status.POSTMORTEM, Status.CLOSED)
# How far before impact started the timeline looks for releases, pauses, approvals and alerts
# of the affected agents: a release just before an incident is often its trigger.
LEAD_IN = timedelta(hours=1)


class IncidentQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=OPEN_STATUSES)

    def with_agent(self, agent_id: int):
        return self.filter(agents__id=agent_id)

    def open_counts(self, agent_ids) -> dict[int, int]:
        """{agent id: open incidents} for these agents, in one query (for fleet tiles)."""
        rows = (
            self.open()
            .filter(agents__id__in=list(agent_ids))
            .values_list("agents__id")
            .annotate(count=models.Count("id", distinct=True))
            .order_by()
        )
        return dict(rows)


class Incident(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="incidents")
    title = models.CharField(max_length=200)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.SEV3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.TRIAGE)
    summary = models.TextField(blank=True)
    failure_class = models.CharField(max_length=16, choices=FailureClass.choices, blank=True)
    # The failure chain, in order: what went wrong first, then what that led to.
    failure_chain = models.JSONField(default=list, blank=True)
    # Caught before harm: counted apart in the metrics.
    near_miss = models.BooleanField(default=False)
    agents = models.ManyToManyField(Agent, blank=True, related_name="incidents")
    # Auto-opened from this alert episode: at most one incident per episode.
    alert_event = models.OneToOneField(
        AlertEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="incident"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Named timestamps (see NAMED_TIMESTAMPS): impact started, detected (the incident opened),
    # acknowledged (ACTIVE), mitigated, resolved, postmortem started, closed (or declined or
    # cancelled). Each is at or after the one before it.
    started_at = models.DateTimeField()
    detected_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    postmortem_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The last status change: a later change (even after a reopen cleared the named
    # timestamps) is never recorded before it.
    status_changed_at = models.DateTimeField()
    reopened_count = models.PositiveSmallIntegerField(default=0)
    # The blast radius as last computed (incidents.blast.compute), and when.
    blast_radius = models.JSONField(default=dict, blank=True)
    blast_radius_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(started_at__lte=models.F("detected_at")),
                name="incident_started_before_detected",
            ),
        ]
        indexes = [
            # Incidents list: WHERE status IN (…) ORDER BY detected_at DESC.
            models.Index(fields=["status", "-detected_at"], name="incident_status_idx"),
            # Metrics: incidents detected in a period.
            models.Index(fields=["-detected_at", "-id"], name="incident_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    def save(self, *args, **kwargs):
        if self.status_changed_at is None:
            self.status_changed_at = self.detected_at
        super().save(*args, **kwargs)

    # --- the status machine ---

    def allowed_next(self) -> list[str]:
        allowed = list(TRANSITIONS[self.status])
        if self.status == Status.RESOLVED and self.postmortem_required:
            allowed.remove(Status.CLOSED)
        return allowed

    @property
    def postmortem_required(self) -> bool:
        return self.severity in POSTMORTEM_REQUIRED

    def check_transition(self, new_status: str, at: datetime, note: str) -> None:
        """Raise ValidationError (naming the field) unless the move is allowed now."""
        if not (note or "").strip():
            raise ValidationError({"note": "Say why: a note is required with every change."})
        if new_status not in Status.values:
            raise ValidationError({"status": f"Unknown status {new_status!r}."})
        if new_status not in self.allowed_next():
            raise ValidationError(
                {"status": f"An incident in {self.status} cannot move to {new_status}."}
            )
        if new_status == Status.CLOSED and self.postmortem_required:
            postmortem = getattr(self, "postmortem", None) if self.pk else None
            if postmortem is None or postmortem.status != Postmortem.Status.PUBLISHED:
                raise ValidationError(
                    {
                        "status": f"A {self.get_severity_display()} incident cannot close without "
                        "a published postmortem."
                    }
                )
        latest = self.latest_timestamp()
        if at < latest:
            raise ValidationError(
                {"at": f"Must not be before {latest:%Y-%m-%d %H:%M:%S} (the last recorded time)."}
            )
        if at > timezone.now() + timedelta(seconds=5):
            raise ValidationError({"at": "Must not be in the future."})

    def latest_timestamp(self) -> datetime:
        times = [getattr(self, name) for name in NAMED_TIMESTAMPS if getattr(self, name)]
        return max([*times, self.status_changed_at])

    def apply_transition(self, new_status: str, at: datetime) -> None:
        """Set the status and its named timestamp; a reopen clears the later timestamps."""
        reopen = new_status in (Status.ACTIVE, Status.TRIAGE) and self.status not in (
            Status.TRIAGE,
        )
        if reopen:
            self.reopened_count += 1
            keep_until = "acknowledged_at" if new_status == Status.ACTIVE else "detected_at"
            for name in NAMED_TIMESTAMPS[NAMED_TIMESTAMPS.index(keep_until) + 1 :]:
                setattr(self, name, None)
        field = STATUS_TIMESTAMP.get(new_status)
        if field and getattr(self, field) is None:
            setattr(self, field, at)
        self.status = new_status
        self.status_changed_at = at

    # --- durations ---

    @staticmethod
    def _between(start, end) -> timedelta | None:
        return end - start if start and end else None

    @property
    def time_to_detect(self):
        """Impact start to detection."""
        return self._between(self.started_at, self.detected_at)

    @property
    def time_to_acknowledge(self):
        """Detection to a commander taking it (ACTIVE)."""
        return self._between(self.detected_at, self.acknowledged_at)

    @property
    def time_to_mitigate(self):
        """Impact start to mitigation."""
        return self._between(self.started_at, self.mitigated_at)

    @property
    def time_to_resolve(self):
        """Impact start to resolution."""
        return self._between(self.started_at, self.resolved_at)

    def elapsed(self, now: datetime | None = None) -> timedelta:
        """How long it has been open: from detection to resolution (or now)."""
        end = self.resolved_at or self.closed_at or now or timezone.now()
        return end - self.detected_at

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The time the timeline and blast radius look at: a lead-in before impact started,
        to resolution (or closing, or now)."""
        end = self.resolved_at or self.closed_at or now or timezone.now()
        return self.started_at - LEAD_IN, end

    def current_holder(self, role: str):
        for assignment in self.roles.all():
            if assignment.role == role and assignment.ended_at is None:
                return assignment.user
        return None

    @property
    def commander(self):
        return self.current_holder(IncidentRole.Role.COMMANDER)


class IncidentRole(models.Model):
    """Who held a role and when. A handoff ends one row and starts another."""

    class Role(models.TextChoices):
        COMMANDER = "commander", "commander"
        SCRIBE = "scribe", "scribe"
        LIAISON = "liaison", "liaison"
        EXPERT = "expert", "subject expert"

    # Roles held by one person at a time; subject experts may be many.
    SINGLE = ("commander", "scribe", "liaison")

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=10, choices=Role.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            # One current commander, scribe and liaison: a second assignment is a handoff.
            models.UniqueConstraint(
                fields=["incident", "role"],
                condition=Q(ended_at__isnull=True) & Q(role__in=["commander", "scribe", "liaison"]),
                name="incident_one_current_holder",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} {self.user} on #{self.incident_id}"


class TimelineEvent(models.Model):
    """One line of the incident's timeline, typed; notes are plain text, rendered escaped."""

    class Kind(models.TextChoices):
        NOTE = "note", "note"
        STATUS = "status", "status change"
        SEVERITY = "severity", "severity change"
        ROLE = "role", "role change"
        TRACE = "trace", "linked trace"
        ALERT = "alert", "alert"
        RELEASE = "release", "release"
        INTERVENTION = "intervention", "agent pause"
        APPROVAL = "approval", "approval"
        ACTION = "action", "action"
        POSTMORTEM = "postmortem", "postmortem"
        EDIT = "edit", "edit"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # When it happened (a release's time, a backdated mitigation), not when it was recorded.
    at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    # Automatic events name their source ("release:12"), so recording one twice is a no-op.
    source = models.CharField(max_length=100, blank=True)
    starred = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "source"],
                condition=~Q(source=""),
                name="timeline_event_source_once",
            )
        ]
        indexes = [models.Index(fields=["incident", "at"], name="timeline_incident_at_idx")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%H:%M} on #{self.incident_id}"


class TraceLink(models.Model):
    """A run tied to an incident by hand (from the trace viewer or a trace id)."""

    class Relation(models.TextChoices):
        TRIGGER = "trigger", "trigger"
        AFFECTED = "affected", "affected"
        EVIDENCE = "evidence", "evidence"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="trace_links")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="incident_links")
    span_id = models.CharField(max_length=16, blank=True)
    relation = models.CharField(max_length=8, choices=Relation.choices)
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "run"], name="trace_link_once_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.relation} {self.run} on #{self.incident_id}"


class TraceQuery(models.Model):
    """Runs tied to an incident by a query, re-run whenever the blast radius is computed, so
    runs that arrive later are counted too."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="trace_queries")
    relation = models.CharField(max_length=8, choices=TraceLink.Relation.choices)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField()
    # Empty: up to the incident's resolution, or now while it is open.
    until = models.DateTimeField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=12, blank=True)
    status = models.CharField(max_length=8, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        parts = [f"agent = {self.agent.name}", f"started ≥ {self.since:%Y-%m-%d %H:%M}"]
        parts.append(
            f"started < {self.until:%Y-%m-%d %H:%M}" if self.until else "started < incident end"
        )
        if self.status:
            parts.append(f"status = {self.status}")
        if self.outcome:
            parts.append(f"outcome = {self.outcome}")
        if self.error_type:
            parts.append(f"a span failed with error type = {self.error_type}")
        return " and ".join(parts)


class ToolEffect(models.Model):
    """What calling a tool does to the world. Tools not listed count as having side effects:
    the blast radius errs towards counting too much rather than too little."""

    class Effect(models.TextChoices):
        READ_ONLY = "read_only", "read only"
        SIDE_EFFECT = "side_effect", "side effects"
        IRREVERSIBLE = "irreversible", "irreversible"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    tool_name = models.CharField(max_length=200)
    effect = models.CharField(max_length=12, choices=Effect.choices)

    class Meta:
        ordering = ["project_id", "tool_name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "tool_name"], name="tool_effect_once")
        ]

    def __str__(self) -> str:
        return f"{self.tool_name}: {self.get_effect_display()}"


class AutoOpenRule(models.Model):
    """Which alert episodes open an incident by themselves, and at what severity."""

    KINDS = (
        AlertEvent.Kind.SLO_FAST_BURN,
        AlertEvent.Kind.BUDGET_BREACH,
        AlertEvent.Kind.RELEASE_REGRESSION,
        AlertEvent.Kind.COHORT_DEGRADATION,
        AlertEvent.Kind.BEHAVIOUR_DRIFT,
    )

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    alert_kind = models.CharField(
        max_length=20,
        choices=[(kind.value, kind.label) for kind in KINDS],
    )
    # Empty: every agent of the project (an agent's own rule wins over it).
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.SEV2)
    failure_class = models.CharField(max_length=16, choices=FailureClass.choices, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["project_id", "alert_kind", "agent_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "alert_kind", "agent"],
                condition=Q(agent__isnull=False),
                name="auto_open_rule_once_per_agent",
            ),
            models.UniqueConstraint(
                fields=["project", "alert_kind"],
                condition=Q(agent__isnull=True),
                name="auto_open_rule_once_per_project",
            ),
        ]

    def __str__(self) -> str:
        target = self.agent.name if self.agent_id else "every agent"
        return f"{self.get_alert_kind_display()} of {target} → {self.get_severity_display()}"


class Postmortem(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        IN_REVIEW = "in_review", "in review"
        PUBLISHED = "published", "published"

    # Draft → in review → published; review may send it back to draft, and a published one
    # may be reopened for review.
    TRANSITIONS = {
        "draft": ("in_review",),
        "in_review": ("draft", "published"),
        "published": ("in_review",),
    }

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="postmortem")
    body = models.TextField(blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"postmortem of #{self.incident_id}"


class ActionItemQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(status__in=(ActionItem.Status.OPEN, ActionItem.Status.IN_PROGRESS))

    def overdue(self, today: date | None = None):
        return self.unfinished().filter(due_date__lt=today or timezone.localdate())


class ActionItem(models.Model):
    class Kind(models.TextChoices):
        PREVENT = "prevent", "prevent"
        DETECT = "detect", "detect"
        MITIGATE = "mitigate", "mitigate"
        PROCESS = "process", "process"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        IN_PROGRESS = "in_progress", "in progress"
        DONE = "done", "done"
        WONT_DO = "wont_do", "won't do"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="action_items")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_date = models.DateField()
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PREVENT)
    status = models.CharField(max_length=11, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = ActionItemQuerySet.as_manager()

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [
            # The list across incidents: unfinished items by due date.
            models.Index(
                fields=["due_date"],
                name="action_item_unfinished_idx",
                condition=Q(status__in=["open", "in_progress"]),
            )
        ]

    def __str__(self) -> str:
        return self.title

    @staticmethod
    def default_due_date(severity: int, today: date | None = None) -> date:
        return (today or timezone.localdate()) + timedelta(days=ACTION_ITEM_DUE_DAYS[severity])

    def is_overdue(self, today: date | None = None) -> bool:
        return self.status in (self.Status.OPEN, self.Status.IN_PROGRESS) and self.due_date < (
            today or timezone.localdate()
        )
