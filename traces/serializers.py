"""Serializers of the read API: the filters it accepts and the runs and spans it returns."""

import re

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from traces.models import Run, Span

MAX_LIMIT = 500
DEFAULT_LIMIT = 100

# In a query string an unescaped "+" decodes to a space, so "…T10:00:00+02:00" typed into curl
# arrives as "…T10:00:00 02:00". A space right before an offset can only have been a "+".
_DECODED_PLUS_OFFSET = re.compile(r"^(.+T[0-9:.]+) (\d\d:?\d\d)$")


class QueryDateTimeField(serializers.DateTimeField):
    default_error_messages = {
        "invalid": (
            "Not an ISO-8601 date-time: use e.g. 2025-01-31T09:30:00Z "
            "(escape '+' in an offset as %2B)."
        ),
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            value = _DECODED_PLUS_OFFSET.sub(r"\1+\2", value.strip())
        return super().to_internal_value(value)


class RunLookupSerializer(serializers.Serializer):
    """The query parameters of GET /api/v1/runs/<trace_id>."""

    project = serializers.SlugField(
        required=False,
        max_length=100,
        help_text="Only runs of this project (useful with a session; a key sees its own only).",
    )

    def filter(self, runs):
        """Narrow a Run queryset by the validated parameters."""
        if "project" in self.validated_data:
            runs = runs.filter(project__name=self.validated_data["project"])
        return runs


class RunFilterSerializer(RunLookupSerializer):
    """The query parameters of GET /api/v1/runs."""

    agent = serializers.CharField(
        required=False, max_length=200, help_text="Only runs of the agent with this name."
    )
    since = QueryDateTimeField(
        required=False, help_text="Only runs started at or after this ISO-8601 date-time."
    )
    until = QueryDateTimeField(
        required=False, help_text="Only runs started before this ISO-8601 date-time."
    )
    status = serializers.ChoiceField(
        required=False, choices=Run.Status.choices, help_text="running, ok or error."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        default=DEFAULT_LIMIT,
        help_text=f"Runs per page, 1 to {MAX_LIMIT}.",
    )
    cursor = serializers.CharField(
        required=False, help_text="Opaque position: follow the `next` link of a previous page."
    )

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and until <= since:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs

    def filter(self, runs):
        """Narrow a Run queryset by the validated filters."""
        runs = super().filter(runs)
        data = self.validated_data
        if "agent" in data:
            runs = runs.filter(agent__name=data["agent"])
        if "since" in data:
            runs = runs.since(data["since"])
        if "until" in data:
            runs = runs.filter(started_at__lt=data["until"])
        if "status" in data:
            runs = runs.filter(status=data["status"])
        return runs


class RunTokensSerializer(serializers.Serializer):
    input = serializers.IntegerField(source="input_tokens", help_text="Includes cache tokens.")
    output = serializers.IntegerField(source="output_tokens")
    cache_read = serializers.IntegerField(source="cache_read_tokens")
    cache_write = serializers.IntegerField(source="cache_write_tokens")


class SpanTokensSerializer(RunTokensSerializer):
    reasoning = serializers.IntegerField(source="reasoning_tokens", help_text="Included in output.")


class RunLinksSerializer(serializers.Serializer):
    api = serializers.SerializerMethodField(help_text="This run in the read API.")
    page = serializers.SerializerMethodField(help_text="This run's page in the cockpit.")

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_api(self, run: Run) -> str:
        return self._absolute(reverse("api-run", args=[run.trace_id]))

    def get_page(self, run: Run) -> str:
        return self._absolute(reverse("run-detail", args=[run.trace_id]))


class RunSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name")
    agent = serializers.SerializerMethodField()
    tokens = RunTokensSerializer(source="*")
    cost_usd = serializers.DecimalField(
        max_digits=16,
        decimal_places=8,
        help_text="A decimal string; a floor when cost_known is false.",
    )
    cost_known = serializers.BooleanField(
        help_text="False when a step used a model without a known price."
    )
    links = RunLinksSerializer(source="*")

    class Meta:
        model = Run
        fields = [
            "trace_id",
            "project",
            "agent",
            "version",
            "name",
            "status",
            "outcome",
            "started_at",
            "ended_at",
            "duration_ms",
            "span_count",
            "llm_calls",
            "tool_calls",
            "error_count",
            "tokens",
            "cost_usd",
            "cost_known",
            "conversation_id",
            "session_id",
            "user_id",
            "task_type",
            "team",
            "pii_count",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_agent(self, run: Run) -> str | None:
        return run.agent.name if run.agent else None


class SpanSerializer(serializers.ModelSerializer):
    agent = serializers.SerializerMethodField()
    tokens = SpanTokensSerializer(source="*")
    cost_usd = serializers.DecimalField(
        max_digits=16,
        decimal_places=8,
        allow_null=True,
        help_text="A decimal string; null when the model's price is unknown.",
    )
    attributes = serializers.JSONField()
    resource = serializers.JSONField()
    events = serializers.JSONField()
    pii = serializers.JSONField(help_text='PII found in the content, by type: {"email": 2}.')

    class Meta:
        model = Span
        fields = [
            "span_id",
            "parent_span_id",
            "agent",
            "kind",
            "name",
            "operation",
            "started_at",
            "ended_at",
            "duration_ms",
            "status",
            "error_type",
            "error_message",
            "provider",
            "model",
            "tool_name",
            "tokens",
            "cost_usd",
            "cost_known",
            "attributes",
            "resource",
            "events",
            "input",
            "input_format",
            "input_truncated",
            "output",
            "output_format",
            "output_truncated",
            "pii",
            "secrets_redacted",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_agent(self, span: Span) -> str | None:
        return span.agent.name if span.agent else None


class RunDetailSerializer(RunSerializer):
    spans = SpanSerializer(many=True, help_text="Every span of the run, in start order.")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "spans"]
        read_only_fields = fields
