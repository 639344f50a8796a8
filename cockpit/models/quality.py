"""Quality and degradation: scores, their daily rollups, run profiles, release checks and the
progress rows of long analyses.

- Score: one evaluation or user-feedback value for a run, from POST /api/v1/scores or from a
  span's `cockpit.score.<name>` attribute. A score may name a trace whose run has not arrived
  yet: it waits with run empty and is linked by cockpit.scores.link_pending.
- ScoreDaily: per agent, version, score name and day (of the run's start), rebuilt whole from
  scores by cockpit.scores.rollup_pass; pages and trends read it.
- RunProfile: what the degradation features need to know about a finished run that its Run row
  does not say — failure signature, path shape, tools, output length, cohort traits, PII found —
  written off the ingest path by cockpit.run_profiles.profile_pass.
- ReleaseCheck: the automatic comparison of a release against the version before it.
- Analysis: a long computation (release comparison, cohort scan) run by Celery, with its
  progress, so a page can poll it and show the result when it is done.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from traces.models import Agent, Project, ReleaseMarker, Run


class Score(models.Model):
    class Kind(models.TextChoices):
        NUMERIC = "numeric"
        BOOLEAN = "boolean"
        CATEGORICAL = "categorical"

    class Source(models.TextChoices):
        USER_FEEDBACK = "user_feedback", "user feedback"
        EVALUATOR = "evaluator"
        HUMAN_REVIEW = "human_review", "human review"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # Empty while the run has not arrived (a score may beat its trace's spans to the cockpit).
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.CASCADE, related_name="scores"
    )
    trace_id = models.CharField(max_length=32)
    # Set for scores read from a span attribute: (run, span, name) is stored once.
    span_id = models.CharField(max_length=16, blank=True)
    # Copied from the run when it is linked, so rollups and SLOs read scores alone.
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    version = models.CharField(max_length=100, blank=True)
    run_started_at = models.DateTimeField(null=True, blank=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=11, choices=Kind.choices)
    value_number = models.FloatField(null=True, blank=True)
    value_bool = models.BooleanField(null=True, blank=True)
    value_category = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=13, choices=Source.choices, default=Source.EVALUATOR)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Moves when the score is linked to its run: the rollup pass reads scores by it.
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Span scores arrive again when a span is re-sent: store them once.
            models.UniqueConstraint(
                fields=["run", "span_id", "name"],
                condition=~Q(span_id=""),
                name="score_unique_span_score",
            )
        ]
        indexes = [
            # Rollups and score SLOs: an agent's scores of one name by run start
            # (agent, name, run_started_at range), and release comparison (… version).
            models.Index(fields=["agent", "name", "run_started_at"], name="score_agent_name_idx"),
            # Rollup pass: scores written or linked since its watermark.
            models.Index(fields=["updated_at"], name="score_updated_idx"),
            # Linking: scores still waiting for their run (run_id IS NULL), by trace id.
            models.Index(
                fields=["project", "trace_id"],
                name="score_pending_idx",
                condition=Q(run__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.display_value}"

    @property
    def display_value(self) -> str:
        if self.kind == self.Kind.BOOLEAN:
            return "yes" if self.value_bool else "no"
        if self.kind == self.Kind.NUMERIC:
            return f"{self.value_number:g}"
        return self.value_category

    @property
    def as_number(self) -> float | None:
        """The value as a number (a boolean counts 1 or 0); None for a category."""
        if self.kind == self.Kind.BOOLEAN:
            return 1.0 if self.value_bool else 0.0
        return self.value_number


class ScoreDaily(models.Model):
    """Scores of one name for one agent and version, by the day their runs started."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    version = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100)
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    # Numeric and boolean scores: how many, their sum and sum of squares (for the mean and
    # its spread); categorical ones: {category: count}.
    numeric_count = models.PositiveIntegerField(default=0)
    total = models.FloatField(default=0)
    total_squares = models.FloatField(default=0)
    categories = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent_id", "name", "day", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "name", "day", "version"], name="score_daily_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.name} {self.version} {self.day}"

    @property
    def mean(self) -> float | None:
        return self.total / self.numeric_count if self.numeric_count else None


class RunProfile(models.Model):
    run = models.OneToOneField(
        Run, primary_key=True, on_delete=models.CASCADE, related_name="profile"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    started_at = models.DateTimeField()
    version = models.CharField(max_length=100, blank=True)
    # The run ended badly: outcome failure or abandoned, or status error.
    failed = models.BooleanField(default=False)
    # Normalised error signature (error type · failing span · message without numbers and
    # ids), "" when no span failed; its hash groups runs into clusters.
    signature = models.CharField(max_length=400, blank=True)
    signature_hash = models.CharField(max_length=16, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    failing_span = models.CharField(max_length=300, blank=True)
    # The sequence of step kinds and tools, e.g. "llm › tool:search_kb › llm".
    path = models.CharField(max_length=500, blank=True)
    path_hash = models.CharField(max_length=16, blank=True)
    tools = models.JSONField(default=dict, blank=True)  # {tool name: calls}
    steps = models.PositiveIntegerField(default=0)  # LLM and tool steps
    output_chars = models.PositiveIntegerField(default=0)  # the run's final answer
    # Cohort attributes of the run's root span and resource: {"app.locale": "de-DE", …}.
    traits = models.JSONField(default=dict, blank=True)
    pii = models.JSONField(default=dict, blank=True)  # {type: count} over the run's spans
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # Drift and cohorts: one agent's profiles in a window.
            models.Index(fields=["agent", "started_at"], name="profile_agent_idx"),
            # Failure clusters: failed runs in a window (failed = true).
            models.Index(
                fields=["started_at"], name="profile_failed_idx", condition=Q(failed=True)
            ),
            # A cluster's first sighting and example runs (signature_hash, started_at).
            models.Index(
                fields=["signature_hash", "started_at"],
                name="profile_signature_idx",
                condition=~Q(signature_hash=""),
            ),
            # PII report: runs that carried PII in a window.
            models.Index(fields=["started_at"], name="profile_pii_idx", condition=~Q(pii={})),
        ]

    def __str__(self) -> str:
        return f"profile of run {self.run_id}"


class ReleaseCheck(models.Model):
    """The automatic comparison of a release with the version before it (regression alerts)."""

    class Verdict(models.TextChoices):
        WAITING = "waiting", "waiting for runs"
        CLEAN = "clean", "no regression"
        REGRESSED = "regressed"

    release = models.OneToOneField(ReleaseMarker, on_delete=models.CASCADE, related_name="+")
    baseline_version = models.CharField(max_length=100, blank=True)
    verdict = models.CharField(max_length=9, choices=Verdict.choices, default=Verdict.WAITING)
    runs_new = models.PositiveIntegerField(default=0)
    runs_baseline = models.PositiveIntegerField(default=0)
    # The metrics that worsened significantly: [{"metric", "label", "p_value", "summary"}].
    findings = models.JSONField(default=list, blank=True)
    # Checked with enough runs (or long enough after the release): not checked again.
    final = models.BooleanField(default=False)
    checked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"check of {self.release}: {self.verdict}"


class Analysis(models.Model):
    """A long computation run by Celery; pages poll it through htmx until it is done."""

    class Kind(models.TextChoices):
        RELEASE_COMPARISON = "release_comparison", "release comparison"
        COHORT_SCAN = "cohort_scan", "cohort scan"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The parameters as one canonical string: a page asking the same question again within
    # a few minutes gets this row (and its result) instead of a new computation.
    key = models.CharField(max_length=300)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    stage = models.CharField(max_length=200, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "key", "-created_at"], name="analysis_key_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
