"""The cockpit's agent-facing API and Prometheus metrics.

- GET  /api/v1/agents/<name>/control → {state, reason, overrides}: what an agent must obey.
- POST /api/v1/releases → a release marker (idempotent on agent + version).
- GET  /metrics → Prometheus text exposition of per-agent runs, errors, cost and latency,
  read from rollups, for a scraper holding settings.COCKPIT_METRICS_TOKEN.

A project key speaks for its own project's agents; a person with a cockpit role may read any
project's control state (with ?project=<name> when two projects share an agent name).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from cockpit import metrics
from cockpit.interventions import control_state
from cockpit.roles import HasViewerRoleOrProjectKey
from traces.api import ERROR, ERRORS
from traces.auth import bearer_token
from traces.models import Agent, ReleaseMarker


class HasProjectKey(BasePermission):
    message = "Send the agent's project key: Authorization: Bearer ck_…"

    def has_permission(self, request, view) -> bool:
        return getattr(request, "project", None) is not None


def access_agent(request, name: str) -> Agent:
    """The agent called `name` that the caller may read, or 404 (never another project's)."""
    agents = Agent.objects.select_related("project", "control").filter(name=name)
    project = getattr(request, "project", None)
    if project is not None:
        agents = agents.filter(project=project)
    elif request.query_params.get("project"):
        agents = agents.filter(project__name=request.query_params["project"])
    found = list(agents[:2])
    if not found:
        raise NotFound(f"No agent named {name!r}.")
    if len(found) > 1:
        raise ValidationError({"project": ["Two projects have this agent: name the project."]})
    return found[0]


class ControlSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Agent.State.choices)
    reason = serializers.CharField(allow_blank=True)
    overrides = serializers.DictField(
        help_text="Set overrides only: max_cost_per_run_usd (decimal string), downgrade_model, "
        "max_steps."
    )


class AgentControl(APIView):
    permission_classes = [HasViewerRoleOrProjectKey]

    @extend_schema(
        operation_id="agent_control",
        summary="What an agent must obey now",
        description=(
            "The agent's state (`active`, `paused`, `stopped`), the operator's reason, and the "
            "overrides set on it. A paused agent starts no new runs until it reads `active` "
            "again; a stopped one also abandons the runs it is in. Poll it every few seconds "
            "to a minute. An unknown agent (or another project's) answers 404."
        ),
        parameters=[
            OpenApiParameter(
                "project",
                str,
                description="With a session only: the project, when two have this agent name.",
            )
        ],
        responses={
            200: ControlSerializer,
            404: OpenApiResponse(ERROR, description="No such agent in the caller's scope."),
            **ERRORS,
        },
        tags=["agents"],
    )
    def get(self, request, name: str):
        agent = access_agent(request, name)
        response = Response(control_state(agent))
        # An agent must never act on a stale answer from a cache between it and the cockpit.
        response["Cache-Control"] = "no-store"
        return response


class ReleaseSerializer(serializers.Serializer):
    agent = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=100)
    prompt_version = serializers.CharField(max_length=100, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    notes = serializers.CharField(max_length=10_000, required=False, allow_blank=True)

    def validate_agent(self, value: str) -> str:
        if not value.strip():
            raise ValidationError("Name the agent.")
        return value.strip()

    def validate_version(self, value: str) -> str:
        if not value.strip():
            raise ValidationError("Name the version.")
        return value.strip()


class ReleaseOutSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")

    class Meta:
        model = ReleaseMarker
        fields = ["id", "agent", "version", "prompt_version", "model", "notes", "source", "at"]


class Releases(APIView):
    permission_classes = [HasProjectKey]

    @extend_schema(
        operation_id="releases_create",
        summary="Record a release",
        description=(
            "Marks a new version of an agent on its charts. Idempotent on agent + version: "
            "posting the same release again answers 200 with the stored marker (blank fields "
            "are filled in, nothing else changes). A release for an agent not seen yet "
            "creates the agent. Releases are also recorded on their own when spans carry a "
            "new `service.version`. A bad field answers 400 naming it."
        ),
        request=ReleaseSerializer,
        responses={
            201: ReleaseOutSerializer,
            200: ReleaseOutSerializer,
            400: OpenApiResponse(description="A field is invalid; the body names it."),
            **ERRORS,
        },
        tags=["agents"],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        incoming = ReleaseSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        marker, created = record_release(request.project, **data)
        return Response(
            ReleaseOutSerializer(marker).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def record_release(project, *, agent: str, version: str, **details) -> tuple[ReleaseMarker, bool]:
    """Store the release marker (agent, version) from the API, or complete the existing one."""
    details = {k: v for k, v in details.items() if v}
    with transaction.atomic():
        agent_row, _ = Agent.objects.get_or_create(project=project, name=agent)
        try:
            with transaction.atomic():
                marker = ReleaseMarker.objects.create(
                    agent=agent_row, version=version, source=ReleaseMarker.Source.API, **details
                )
            return marker, True
        except IntegrityError:
            pass  # recorded before, by the API or by ingest seeing the version
        marker = ReleaseMarker.objects.select_for_update().get(agent=agent_row, version=version)
        missing = {k: v for k, v in details.items() if not getattr(marker, k)}
        if missing:
            for field, value in missing.items():
                setattr(marker, field, value)
            marker.save(update_fields=list(missing))
    return marker, False


# --- Prometheus ----------------------------------------------------------------------------------


@require_GET
def prometheus_metrics(request):
    """GET /metrics with `Authorization: Bearer <COCKPIT_METRICS_TOKEN>`; 401 otherwise."""
    expected = getattr(settings, "COCKPIT_METRICS_TOKEN", "")
    presented = bearer_token(request)
    if not expected or not presented or not hmac.compare_digest(presented, expected):
        response = HttpResponse(
            "Send the metrics token: Authorization: Bearer <COCKPIT_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="agent-cockpit-metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
