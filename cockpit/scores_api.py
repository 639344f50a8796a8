"""POST /api/v1/scores: an evaluation or user-feedback score for a run, with a project key.

The run is named by `trace_id` (what an agent knows) or `run_id` (what the read API returns).
A trace id whose run has not arrived yet is accepted with 202 and `pending: true`: feedback often
reaches the cockpit before a batching exporter has sent the trace, and the score is attached as
soon as the run is stored. An unknown `run_id` is 404 (run ids exist only once stored).
"""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cockpit import scores
from cockpit.api import HasProjectKey
from cockpit.models import Score
from traces.api import ERRORS
from traces.models import Run

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@extend_schema_field(
    {"oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string", "maxLength": 100}]}
)
class ScoreValueField(serializers.Field):
    """A number, a boolean or a short string: the score's kind follows from it."""

    default_error_messages = {
        "invalid": "Send a number, true/false, or a category string of 1 to 100 characters.",
    }

    def to_internal_value(self, data):
        if scores.kind_of(data) is None:
            self.fail("invalid")
        return data

    def to_representation(self, value):
        if isinstance(value, Score):  # the whole score (source="*"): its value by kind
            if value.kind == Score.Kind.BOOLEAN:
                return value.value_bool
            if value.kind == Score.Kind.NUMERIC:
                return value.value_number
            return value.value_category
        return value


class ScoreInSerializer(serializers.Serializer):
    trace_id = serializers.CharField(
        required=False, help_text="The run's trace id: 32 hex characters."
    )
    run_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Or the run's id, as the read API gives it."
    )
    name = serializers.CharField(
        max_length=100, help_text="What is scored, e.g. `helpfulness` (letters, digits, _.:-)."
    )
    value = ScoreValueField(help_text="A number, true/false, or a category string.")
    kind = serializers.ChoiceField(
        choices=Score.Kind.choices,
        required=False,
        help_text="Optional: must agree with the value when sent.",
    )
    source = serializers.ChoiceField(choices=Score.Source.choices, default=Score.Source.EVALUATOR)
    comment = serializers.CharField(
        max_length=scores.COMMENT_MAX, required=False, allow_blank=True, default=""
    )

    def validate_trace_id(self, value: str) -> str:
        value = value.strip().lower()
        if not TRACE_ID.match(value):
            raise ValidationError("A trace id is 32 hexadecimal characters.")
        return value

    def validate_name(self, value: str) -> str:
        if not scores.SCORE_NAME.match(value):
            raise ValidationError("Use 1 to 100 letters, digits, or _ . : -")
        return value

    def validate(self, data):
        if not data.get("trace_id") and not data.get("run_id"):
            raise ValidationError({"trace_id": ["Name the run: trace_id or run_id."]})
        kind = scores.kind_of(data["value"])
        if data.get("kind") and data["kind"] != kind:
            raise ValidationError({"kind": [f"The value is {kind}, not {data['kind']}."]})
        data["kind"] = kind
        return data


class ScoreOutSerializer(serializers.ModelSerializer):
    value = ScoreValueField(source="*")
    pending = serializers.SerializerMethodField(
        help_text="True while the run has not arrived; the score is attached when it does."
    )

    class Meta:
        model = Score
        fields = [
            "id", "run_id", "trace_id", "name", "kind", "value", "source", "comment",
            "created_at", "pending",
        ]  # fmt: skip

    def get_pending(self, score) -> bool:
        return score.run_id is None


class Scores(APIView):
    permission_classes = [HasProjectKey]

    @extend_schema(
        operation_id="scores_create",
        summary="Score a run",
        description=(
            "Records an evaluation or user-feedback score for a run: a number, a boolean or a "
            "category, from `user_feedback`, an `evaluator` or a `human_review`. Name the run "
            "by `trace_id` or `run_id`. A trace id whose run has not arrived yet answers 202 "
            "with `pending: true`; the score is attached once the run is stored. An unknown "
            "`run_id` answers 404. A bad field answers 400 naming it. Scores also arrive as "
            "span attributes `cockpit.score.<name>`."
        ),
        request=ScoreInSerializer,
        responses={
            201: ScoreOutSerializer,
            202: OpenApiResponse(ScoreOutSerializer, description="Stored, waiting for its run."),
            400: OpenApiResponse(description="A field is invalid; the body names it."),
            404: OpenApiResponse(description="No run with this run_id in the key's project."),
            **ERRORS,
        },
        tags=["scores"],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        incoming = ScoreInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        runs = Run.objects.filter(project=request.project)
        if data.get("run_id"):
            run = runs.filter(pk=data["run_id"]).first()
            if run is None:
                raise NotFound(f"No run with id {data['run_id']} in this project.")
            if data.get("trace_id") and data["trace_id"] != run.trace_id:
                raise ValidationError({"trace_id": ["This is not the trace id of run_id."]})
        else:
            run = runs.filter(trace_id=data["trace_id"]).first()
        score = scores.record_score(
            request.project,
            trace_id=run.trace_id if run else data["trace_id"],
            run=run,
            name=data["name"],
            kind=data["kind"],
            value=data["value"],
            source=data["source"],
            comment=data.get("comment", ""),
        )
        return Response(
            ScoreOutSerializer(score).data,
            status=status.HTTP_201_CREATED if run else status.HTTP_202_ACCEPTED,
        )
