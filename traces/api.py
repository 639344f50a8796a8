"""Read API for scripts and exports (GET /api/v1/runs, /api/v1/runs/<trace_id>) and its docs.

A project key sees its own project's runs; a logged-in person with a cockpit role sees every
project's. Both answer "not found" for a run outside the caller's scope.
"""

from django.db.models import Prefetch
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from cockpit.roles import VIEWER, HasViewerRoleOrProjectKey, role_required
from traces.models import Run, Span
from traces.serializers import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    RunDetailSerializer,
    RunFilterSerializer,
    RunLookupSerializer,
    RunSerializer,
)

ERROR = inline_serializer("Error", {"detail": serializers.CharField()})
ERRORS = {
    401: OpenApiResponse(ERROR, description="No credentials, or an unknown or revoked key."),
    403: OpenApiResponse(ERROR, description="Logged in, but without a cockpit role."),
}


def runs_in_scope(request):
    """The runs the caller may read: its project's for a key, every project's for a person."""
    runs = Run.objects.select_related("project", "agent")
    project = getattr(request, "project", None)
    if project is not None:
        runs = runs.filter(project=project)
    return runs


class RunCursorPagination(CursorPagination):
    """Newest first, by keyset on (started_at, id): pages stay stable while runs arrive."""

    ordering = ("-started_at", "-id")
    page_size = DEFAULT_LIMIT
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {"cursor": ["Not a cursor of this API: follow a `next` link unchanged."]}
            ) from None


class RunList(generics.ListAPIView):
    serializer_class = RunSerializer
    pagination_class = RunCursorPagination

    def get_queryset(self):
        filters = RunFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return filters.filter(runs_in_scope(self.request))

    @extend_schema(
        operation_id="runs_list",
        summary="List runs",
        description=(
            "Runs (one per trace), newest first, paginated by cursor: follow `next` until it "
            "is null. With a project key, only that project's runs; with a session, every "
            "project's (narrow with `project`). A bad filter answers 400 with the field name "
            'and the reason, e.g. `{"since": ["Not an ISO-8601 date-time: …"]}`.'
        ),
        parameters=[RunFilterSerializer],
        responses={
            200: RunSerializer(many=True),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A filter is invalid; the body maps each bad field to its reasons.",
            ),
            **ERRORS,
        },
        tags=["runs"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class RunDetail(generics.RetrieveAPIView):
    serializer_class = RunDetailSerializer

    def get_object(self):
        lookup = RunLookupSerializer(data=self.request.query_params)
        lookup.is_valid(raise_exception=True)
        trace_id = self.kwargs["trace_id"].strip().lower()
        spans = Span.objects.select_related("agent").order_by("started_at", "id")
        runs = (
            lookup.filter(runs_in_scope(self.request))
            .filter(trace_id=trace_id)
            .prefetch_related(Prefetch("spans", queryset=spans))
        )
        # A trace id is unique per project; a person reading every project gets the newest.
        run = runs.order_by("-started_at", "-id").first()
        if run is None:
            project = getattr(self.request, "project", None)
            scope = f" in project {project.name}" if project is not None else ""
            raise NotFound(f"No run with trace id {trace_id}{scope}.")
        return run

    @extend_schema(
        operation_id="runs_retrieve",
        summary="One run with its spans",
        description=(
            "The run of one trace with every span, in start order. A run outside the caller's "
            "scope (another project's, for a key) answers 404."
        ),
        parameters=[
            OpenApiParameter(
                "trace_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="32 hex digits."
            ),
            RunLookupSerializer,
        ],
        responses={
            200: RunDetailSerializer,
            404: OpenApiResponse(
                ERROR, description="No run with this trace id in the caller's scope."
            ),
            **ERRORS,
        },
        tags=["runs"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- OpenAPI schema and docs -----------------------------------------------------------------

API_DESCRIPTION = """\
Agent-facing and read API of Agent Cockpit (v1: changed only additively).

**Authentication.** Agents and scripts send their project key as `Authorization: Bearer ck_…`
(create one on the Projects page or with `manage.py create_ingest_key --project NAME`).
A key reads and writes its own project only. People logged in to the cockpit with a role use
their session and see every project.

**Ingest.** Spans arrive over OTLP/HTTP at `POST /v1/traces` (protobuf or JSON, optionally
gzip), the endpoint any OpenTelemetry SDK exporter speaks: point
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` at `https://<cockpit>/v1/traces` and set
`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20ck_…`. It is described below as well,
though it is not a JSON endpoint.

**Errors.** 400 bodies map each bad field to its reasons; other errors carry `detail`.
"""

OTLP_PATH = {
    "post": {
        "operationId": "otlp_traces_export",
        "summary": "Send spans (OTLP/HTTP)",
        "description": (
            "An OTLP `ExportTraceServiceRequest`, as protobuf (`application/x-protobuf`) or "
            "OTLP/JSON (`application/json`), optionally with `Content-Encoding: gzip`. "
            "Sending the same span twice stores it once. Spans that cannot be stored are "
            "counted in the response's `partial_success`."
        ),
        "tags": ["ingest"],
        "security": [{"projectKey": []}],
        "parameters": [
            {
                "in": "header",
                "name": "Content-Encoding",
                "required": False,
                "schema": {"type": "string", "enum": ["gzip"]},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "ExportTraceServiceRequest in OTLP/JSON encoding.",
                    }
                },
            },
        },
        "responses": {
            "200": {
                "description": (
                    "Accepted: an ExportTraceServiceResponse in the request's encoding; "
                    "`partial_success.rejected_spans` counts spans that were not stored."
                )
            },
            "400": {"description": "The body is not a valid OTLP request."},
            "401": {"description": "No project key, or an unknown or revoked one."},
            "413": {"description": "The body (after decompression) is too large."},
            "415": {"description": "Neither protobuf nor JSON."},
            "503": {"description": "Busy or the database is unavailable: retry after Retry-After."},
        },
    }
}


def document_otlp_receiver(result, generator, request, public):
    """Postprocessing hook: /v1/traces is a plain Django view, so describe it by hand."""
    result.setdefault("paths", {})["/v1/traces"] = OTLP_PATH
    return result


class IngestKeyScheme(OpenApiAuthenticationExtension):
    target_class = "traces.auth.IngestKeyAuthentication"
    name = "projectKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project key, `ck_…`; it speaks for one project.",
        }


class ApiSchema(SpectacularAPIView):
    """The OpenAPI schema, for anyone who may use the API: a project key or a cockpit role."""

    permission_classes = [HasViewerRoleOrProjectKey]
    custom_settings = {
        "DESCRIPTION": API_DESCRIPTION,
        # Runs and spans both have a "status" with different choices: name each enum.
        "ENUM_NAME_OVERRIDES": {
            "RunStatusEnum": "traces.models.Run.Status",
            "SpanStatusEnum": "traces.models.Span.Status",
            "ApprovalStatusEnum": "approvals.models.ApprovalRequest.Status",
            "ScoreKindEnum": "cockpit.models.Score.Kind",
            "ScoreSourceEnum": "cockpit.models.Score.Source",
        },
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "traces.api.document_otlp_receiver",
            "approvals.api.document_long_poll",
        ],
    }


class ApiDocs(SpectacularSwaggerSplitView):
    """Swagger UI. The split view serves its start-up script from a URL: no inline script."""

    permission_classes = [HasViewerRoleOrProjectKey]
    url_name = "api-schema"
    title = "Agent Cockpit API"


# A page for people: anonymous visitors go to the login page, people without a role get 403.
api_docs = role_required(VIEWER)(ApiDocs.as_view())
