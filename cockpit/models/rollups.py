"""Rollups: per agent and per dimension, per minute, hour and day, folded from runs and spans.

A 10-second slice row is always recomputed whole from the raw runs and spans of its (slice,
agent), and a minute row whole from its six slices, so folding is idempotent: a late or
repeated span refolds its slice and minute and the rows come out right.
Hour rows are recomputed whole from minute rows, day rows from hour rows (cockpit.rollups).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone

from traces.models import Agent, Project


class RollupQuerySet(models.QuerySet):
    def totals(self):
        """The per-agent total rows (no dimension)."""
        return self.filter(dim_kind=Rollup.Dim.ALL)

    def at(self, resolution: str):
        return self.filter(resolution=resolution)

    def between(self, since, until):
        return self.filter(bucket_start__gte=since, bucket_start__lt=until)


class RollupFigures(models.Model):
    """The figures of one bucket of one agent and dimension value: Rollup's and RollupSlice's."""

    class Dim(models.TextChoices):
        ALL = "", "agent total"
        MODEL = "model"
        TEAM = "team"
        TASK_TYPE = "task_type", "task type"
        VERSION = "version"
        ENVIRONMENT = "environment"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    dim_kind = models.CharField(max_length=12, choices=Dim.choices, blank=True, default="")
    # The dimension's value; "" for the total row and for runs that do not say (shown "none").
    dim_value = models.CharField(max_length=200, blank=True, default="")

    # Runs that started in the bucket. Outcomes partition them: an explicit
    # cockpit.run.outcome wins; without one a finished run counts as success (status ok) or
    # failure (status error), and a run with no root span yet as unknown.
    runs = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    escalated = models.PositiveIntegerField(default=0)
    abandoned = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0)
    # Runs with status error (error root span or outcome failure): the error rate's numerator.
    error_runs = models.PositiveIntegerField(default=0)
    # Spans with status error, by error.type ("" when the span named none), and tool errors
    # split by cockpit.rollups.is_transient_error.
    error_spans = models.PositiveIntegerField(default=0)
    errors_by_type = models.JSONField(default=dict, blank=True)
    tool_errors_transient = models.PositiveIntegerField(default=0)
    tool_errors_permanent = models.PositiveIntegerField(default=0)
    spans = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    # Runs whose cost is a floor (a model without a price): cost is fully known when zero.
    cost_unknown_runs = models.PositiveIntegerField(default=0)
    duration_ms_sum = models.FloatField(default=0)
    # cockpit.histogram sparse histograms {bucket: count}: run durations, LLM and tool steps.
    run_hist = models.JSONField(default=dict, blank=True)
    llm_hist = models.JSONField(default=dict, blank=True)
    tool_hist = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    @property
    def cost_known(self) -> bool:
        return self.cost_unknown_runs == 0


class Rollup(RollupFigures):
    class Resolution(models.TextChoices):
        MINUTE = "1m"
        HOUR = "1h"
        DAY = "1d"

    resolution = models.CharField(max_length=2, choices=Resolution.choices)
    bucket_start = models.DateTimeField()

    objects = RollupQuerySet.as_manager()

    class Meta:
        ordering = ["resolution", "agent_id", "bucket_start"]
        constraints = [
            # One row per bucket and dimension value. Also the index of every per-agent read:
            # timeseries (resolution, '', agent, bucket range), breakdowns (resolution,
            # 'model', agent, bucket range), and the fold's delete of one (minute, agent).
            models.UniqueConstraint(
                fields=["resolution", "dim_kind", "agent", "bucket_start", "dim_value"],
                name="rollup_unique_bucket",
            )
        ]
        indexes = [
            # Fleet page and fleet totals: every agent's total rows in a window
            # (resolution, dim_kind = '', bucket_start range).
            models.Index(fields=["resolution", "dim_kind", "bucket_start"], name="rollup_fleet_idx")
        ]

    def __str__(self) -> str:
        return (
            f"{self.resolution} {self.bucket_start:%Y-%m-%d %H:%M} {self.agent_id} {self.dim_kind}"
        )


class RollupSlice(RollupFigures):
    """One agent's figures over a 10-second slice of a minute: the unit the fold rebuilds.

    Rebuilding a slice from raw runs and spans rereads at most ten seconds of one agent's
    traffic; its minute row is then the merge of its six slices (counters add, histograms
    merge). Slices are only the fold's working state: dashboards read minute rows, and slices
    of minutes older than cockpit.rollups.SLICE_KEEP are deleted (a late run in such a minute
    rebuilds all six of its slices from the raw runs and spans again).
    """

    bucket_start = models.DateTimeField()

    class Meta:
        constraints = [
            # One row per slice and dimension value; also the index of the fold's delete and of
            # the minute merge's read (agent, slice range).
            models.UniqueConstraint(
                fields=["agent", "bucket_start", "dim_kind", "dim_value"],
                name="rollup_slice_unique",
            )
        ]
        indexes = [
            # Pruning slices of old minutes across all agents.
            models.Index(fields=["bucket_start"], name="rollup_slice_start_idx")
        ]

    def __str__(self) -> str:
        return f"slice {self.bucket_start:%Y-%m-%d %H:%M:%S} {self.agent_id} {self.dim_kind}"


class RollupWatermark(models.Model):
    """How far folding has read Run.updated_at. One row per name, claimed FOR UPDATE."""

    name = models.CharField(max_length=20, unique=True)
    position = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ {self.position.isoformat()}"


class RollupDirty(models.Model):
    """An hour or day bucket of one agent whose finer rows changed: recompute it.

    The fold pass upserts these (bumping marked_at, which locks the row, so a recompute that
    has claimed the marker cannot miss the change); the coarse pass claims them with
    DELETE … SKIP LOCKED in the transaction that rewrites the bucket.
    """

    resolution = models.CharField(max_length=2, choices=Rollup.Resolution.choices)
    bucket_start = models.DateTimeField()
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    marked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Coarse pass: the oldest dirty buckets of a resolution first; upsert target.
            models.UniqueConstraint(
                fields=["resolution", "bucket_start", "agent"], name="rollup_dirty_unique"
            )
        ]

    def __str__(self) -> str:
        return f"dirty {self.resolution} {self.bucket_start.isoformat()} {self.agent_id}"


class FoldedRun(models.Model):
    """Where the last fold counted a run: its (agent, 10-second slice) bucket.

    A run's start moves earlier and its agent can change when its root span arrives after its
    children; the bucket it was counted in must then be recomputed too, or the run would count
    twice. No foreign key: the row only ever names buckets to refold.
    """

    run_id = models.BigIntegerField(primary_key=True)
    agent_id = models.BigIntegerField()
    # The start of the slice (cockpit.models.RollupSlice) the run was counted in. Rows written
    # before slices hold a minute's start, which is also its first slice's start.
    slice_start = models.DateTimeField()

    def __str__(self) -> str:
        return f"run {self.run_id} in {self.agent_id}@{self.slice_start.isoformat()}"
