"""Projects, their ingest keys, agents, runs (one per trace), spans and release markers."""

import hashlib
import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone

KEY_PREFIX = "ck_"


def hash_key(plaintext: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


class Project(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IngestKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class IngestKey(models.Model):
    """A project key. Only its SHA-256 is stored; the plaintext is shown once, at creation."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=100, blank=True)
    # The first characters of the key, so people can tell keys apart without the secret.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = IngestKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.project} {self.prefix}…"

    @classmethod
    def issue(cls, project: Project, label: str = "", user=None) -> tuple["IngestKey", str]:
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            project=project,
            label=label,
            prefix=plaintext[:10],
            key_hash=hash_key(plaintext),
            created_by=user,
        )
        return key, plaintext

    @classmethod
    def authenticate(cls, plaintext: str) -> "IngestKey | None":
        if not plaintext or not plaintext.startswith(KEY_PREFIX):
            return None
        return (
            cls.objects.active()
            .select_related("project")
            .filter(key_hash=hash_key(plaintext))
            .first()
        )

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Agent(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        STOPPED = "stopped"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200)
    team = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environment = models.CharField(max_length=50, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    state_reason = models.CharField(max_length=500, blank=True)
    current_version = models.CharField(max_length=100, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="agent_unique_name_per_project"
            )
        ]

    def __str__(self) -> str:
        return self.name


class RunQuerySet(models.QuerySet):
    def for_agent(self, agent: Agent):
        return self.filter(agent=agent)

    def since(self, moment):
        return self.filter(started_at__gte=moment)


class Run(models.Model):
    """One trace. Its summary is recomputed from its spans whenever spans arrive."""

    class Status(models.TextChoices):
        RUNNING = "running"  # no root span yet
        OK = "ok"
        ERROR = "error"

    class Outcome(models.TextChoices):
        UNKNOWN = ""
        SUCCESS = "success"
        FAILURE = "failure"
        ESCALATED = "escalated"
        ABANDONED = "abandoned"

    # Like spans, runs are written by ingest on the hot path, with project and agent ids it has
    # just read or written in the same transaction: no database foreign-key check (a trigger
    # and a row lock per run) and no index of their own, since run_unique_trace_per_project
    # and run_agent_recent_idx lead with them. Deletes still cascade through Django.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="runs", db_index=False, db_constraint=False
    )
    trace_id = models.CharField(max_length=32)
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
        db_constraint=False,
    )
    name = models.CharField(max_length=300, blank=True)
    version = models.CharField(max_length=100, blank=True)
    conversation_id = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    task_type = models.CharField(max_length=100, blank=True)
    team = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    span_count = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    # False when any priced step used a model without a known price: cost_usd is then a floor.
    cost_known = models.BooleanField(default=True)
    pii_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # Ingest: INSERT … ON CONFLICT (project_id, trace_id). Trace id first, so the same
            # index serves /traces/<trace_id>/ and the read API, which look runs up by trace id
            # alone.
            models.UniqueConstraint(
                fields=["trace_id", "project"], name="run_unique_trace_per_project"
            )
        ]
        indexes = [
            # Runs list, newest first: ORDER BY started_at DESC, id DESC (keyset pagination).
            models.Index(fields=["-started_at", "-id"], name="run_recent_idx"),
            # Fleet list and agent pages: runs of one agent in a time window.
            models.Index(fields=["agent", "-started_at"], name="run_agent_recent_idx"),
            # Conversation view: every run of one conversation in order.
            models.Index(
                fields=["conversation_id", "started_at"],
                name="run_conversation_idx",
                condition=~Q(conversation_id=""),
            ),
            # Runs list sorted by duration or cost (either direction), keyset-paginated:
            # ORDER BY duration_ms DESC, id DESC / cost_usd DESC, id DESC. A minimum-duration
            # or minimum-cost filter under the time sort reads a range of these too.
            models.Index(fields=["-duration_ms", "-id"], name="run_duration_idx"),
            models.Index(fields=["-cost_usd", "-id"], name="run_cost_idx"),
            # Runs list filtered by user: WHERE user_id = %s ORDER BY started_at DESC, id DESC.
            models.Index(
                fields=["user_id", "-started_at", "-id"],
                name="run_user_recent_idx",
                condition=~Q(user_id=""),
            ),
            # Runs list filtered to runs in progress (status = 'running'), newest first: few
            # rows at any time, but without this the list would walk every finished run.
            models.Index(
                fields=["-started_at", "-id"],
                name="run_running_recent_idx",
                condition=Q(status="running"),
            ),
            # Rollup folding: runs whose summary changed since the fold's watermark,
            # WHERE updated_at >= %s ORDER BY updated_at (cockpit.rollups.fold_pass).
            models.Index(fields=["updated_at"], name="run_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.trace_id

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Span(models.Model):
    class Kind(models.TextChoices):
        AGENT = "agent"
        LLM = "llm"
        TOOL = "tool"
        RETRIEVER = "retriever"
        CHAIN = "chain"
        GUARDRAIL = "guardrail"
        APPROVAL = "approval"
        OTHER = "other"

    class Status(models.TextChoices):
        UNSET = "unset"
        OK = "ok"
        ERROR = "error"

    # Spans are the hot table: every index and foreign-key check costs each ingested row
    # (a database foreign-key check is a trigger and a row lock per span). The unique
    # constraint below leads with run, so run needs no index of its own; project has none
    # (deleting a whole project scans spans, which is rare and fine). Ingest sets project,
    # run and agent from rows it has just written or locked in the same transaction, so the
    # database does not check them again. Deletes still cascade through Django.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="spans", db_index=False, db_constraint=False
    )
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.OTHER)
    name = models.CharField(max_length=300)
    operation = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    status = models.CharField(max_length=5, choices=Status.choices, default=Status.UNSET)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    tool_name = models.CharField(max_length=200, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    # NULL means the price is unknown (never stored as zero); see cost_known.
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True)
    cost_known = models.BooleanField(default=True)
    attributes = models.JSONField(default=dict, blank=True)
    resource = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    # Content is stored as text: JSON of normalised messages when the span carried messages
    # (input_format "messages"), else the raw value. Longer content is cut at
    # COCKPIT_CONTENT_MAX_CHARS and the cut is recorded in *_truncated.
    input = models.TextField(blank=True)
    output = models.TextField(blank=True)
    input_format = models.CharField(max_length=10, blank=True)
    output_format = models.CharField(max_length=10, blank=True)
    input_truncated = models.BooleanField(default=False)
    output_truncated = models.BooleanField(default=False)
    # PII found in content, by type: {"email": 2, "card": 1}. Secrets are redacted, only counted.
    pii = models.JSONField(default=dict, blank=True)
    secrets_redacted = models.PositiveIntegerField(default=0)
    ingested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            # Idempotent ingest: a span id is stored once per run (a run is one trace of one
            # project). The same index serves every read of one run's spans (run page, summary
            # recompute, rollups, retention): WHERE run_id = … then a sort of a few rows.
            models.UniqueConstraint(fields=["run", "span_id"], name="span_unique_in_run")
        ]
        indexes = [
            # Unknown-price list and repricing: spans whose model had no price.
            models.Index(
                fields=["provider", "model"],
                name="span_unpriced_idx",
                condition=Q(cost_known=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id}/{self.span_id} {self.name}"


class RunSearch(models.Model):
    """The words of one run's content (its spans' input and output), for the runs list's text
    search on PostgreSQL.

    Written by traces.search.index_pass off the ingest path: a text index on spans costs every
    ingested span, while one document per run, rebuilt a few seconds after the run changes,
    costs a background pass and makes a search read one row per run instead of probing spans.
    """

    run = models.OneToOneField(Run, on_delete=models.CASCADE, primary_key=True, related_name="+")
    # to_tsvector('simple', …): no stemming, no stop words, the same for every language.
    document = SearchVectorField()

    def __str__(self) -> str:
        return f"search document of run {self.run_id}"


class ReleaseMarker(models.Model):
    class Source(models.TextChoices):
        API = "api"
        AUTO = "auto"  # seen first as a new service.version in ingested spans

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="releases")
    version = models.CharField(max_length=100)
    prompt_version = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    source = models.CharField(max_length=4, choices=Source.choices, default=Source.AUTO)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "version"], name="release_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.agent} {self.version}"


class ModelPrice(models.Model):
    """A project's own price for a model: overrides genai-prices, or prices what it lacks."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prices")
    provider = models.CharField(max_length=100, blank=True, help_text="Empty matches any provider.")
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField("input $/M tokens", max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField("output $/M tokens", max_digits=12, decimal_places=6)
    cache_read_per_mtok = models.DecimalField(
        "cache read $/M tokens", max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write $/M tokens", max_digits=12, decimal_places=6, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "provider", "model"], name="price_unique_per_project"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model}"


class UnpricedModel(models.Model):
    """A model seen at ingest without a known price, listed so an admin can add one."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="unpriced_models")
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200)
    span_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "provider", "model"], name="unpriced_unique_per_project"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"
