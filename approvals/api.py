"""The agent-facing approval API (v1 contract: change only additively).

- POST /api/v1/approvals → create (idempotent on idempotency_key: a replay answers 200 with the
  same request, the same key with other arguments 409).
- GET  /api/v1/approvals/<id>?wait=<seconds> → the request's state; with wait (≤ 60), answers
  the moment it is decided, or at the timeout still pending. The wait holds no database
  connection (approvals.waiting).
- POST /api/v1/approvals/<id>/cancel → withdraw a pending request.

Every call needs the agent's project key; another project's request is a 404.
"""

from __future__ import annotations

import re

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.engine import ApprovalError, decision_payload, do_cancel, do_create_request
from approvals.models import ApprovalRequest, Risk
from approvals.waiting import Waiter
from cockpit.api import HasProjectKey
from traces.api import ERRORS
from traces.auth import key_from_request

MAX_WAIT_SECONDS = 60
HEX = re.compile(r"^[0-9a-f]+$")


class ApprovalInSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=200)
    agent = serializers.CharField(max_length=200)
    action = serializers.CharField(max_length=200)
    arguments = serializers.JSONField(help_text="A JSON object: the exact arguments of the action.")
    summary = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    rationale = serializers.CharField(
        max_length=20_000, required=False, allow_blank=True, default=""
    )
    risk = serializers.ChoiceField(choices=Risk.choices, required=False, allow_blank=True)
    amount = serializers.DecimalField(
        max_digits=18, decimal_places=4, required=False, allow_null=True, min_value=0
    )
    currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, allow_blank=True, default="",
        error_messages={"invalid": "An ISO 4217 code in capitals, e.g. USD."},
    )  # fmt: skip
    trace_id = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    span_id = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    callback_url = serializers.URLField(
        max_length=500, required=False, allow_blank=True, default=""
    )

    def validate_arguments(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object ({…}), the action's arguments.")
        return value

    def validate_trace_id(self, value):
        return _hex(value, 32, "32 hex characters (the OTel trace id).")

    def validate_span_id(self, value):
        return _hex(value, 16, "16 hex characters (the OTel span id).")

    def validate_callback_url(self, value):
        if value and not value.startswith(("http://", "https://")):
            raise serializers.ValidationError("An http(s) URL.")
        return value


def _hex(value: str, length: int, message: str) -> str:
    value = value.lower()
    if value and (len(value) != length or not HEX.match(value)):
        raise serializers.ValidationError(message)
    return value


class ApprovalOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ApprovalRequest.Status.choices)
    level = serializers.IntegerField()
    level_due_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    arguments_sha256 = serializers.CharField()
    comment = serializers.CharField(help_text="Why, when the request was rejected at once.")
    callback_secret = serializers.CharField(
        help_text="Verifies the callback's X-Cockpit-Signature (empty without callback_url)."
    )


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ApprovalRequest.Status.choices)
    level = serializers.IntegerField()
    level_due_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    comment = serializers.CharField()
    arguments = serializers.JSONField(help_text="The effective arguments: act on these only.")
    arguments_sha256 = serializers.CharField()
    edited = serializers.BooleanField(help_text="True when a reviewer edited the arguments.")


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT


def _refuse(error: ApprovalError):
    if error.status == 409:
        raise Conflict({error.field or "detail": str(error)} if error.field else str(error))
    raise ValidationError({error.field or "non_field_errors": [str(error)]})


class ApprovalCreate(APIView):
    permission_classes = [HasProjectKey]

    @extend_schema(
        operation_id="approvals_create",
        summary="Ask for approval before a risky action",
        description=(
            "Creates an approval request and answers at once; then wait for the decision with "
            "`GET /api/v1/approvals/{id}?wait=30` in a loop. Idempotent on `idempotency_key`: "
            "a replay answers 200 with the same request; the same key with other arguments "
            "answers 409. A paused or stopped agent's request is rejected at once (`status` "
            "`rejected`, the reason in `comment`). With `callback_url`, the decision is also "
            "POSTed there, signed with `callback_secret`, retried with backoff. A bad field "
            "answers 400 naming it."
        ),
        request=ApprovalInSerializer,
        responses={
            201: ApprovalOutSerializer,
            200: ApprovalOutSerializer,
            400: OpenApiResponse(description="A field is invalid; the body names it."),
            409: OpenApiResponse(description="idempotency_key reused with other arguments."),
            **ERRORS,
        },
        tags=["approvals"],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        incoming = ApprovalInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            approval, created = do_create_request(request.project, incoming.validated_data)
        except ApprovalError as error:
            _refuse(error)
        body = {
            "id": approval.pk,
            "status": approval.status,
            "level": approval.level,
            "level_due_at": approval.level_due_at,
            "expires_at": approval.expires_at,
            "arguments_sha256": approval.arguments_sha256,
            "comment": approval.comment,
            "callback_secret": approval.callback_secret,
        }
        return Response(
            ApprovalOutSerializer(body).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ApprovalCancel(APIView):
    permission_classes = [HasProjectKey]

    @extend_schema(
        operation_id="approvals_cancel",
        summary="Withdraw a pending request",
        description="Cancels the request; 409 when it is no longer pending.",
        request=None,
        responses={
            200: DecisionSerializer,
            409: OpenApiResponse(description="Not pending."),
            **ERRORS,
        },  # fmt: skip
        tags=["approvals"],
    )
    def post(self, request, pk: int):
        approval = ApprovalRequest.objects.filter(project=request.project, pk=pk).first()
        if approval is None:
            raise NotFound("No such approval request in this project.")
        try:
            approval = do_cancel(approval)
        except ApprovalError as error:
            _refuse(error)
        return Response(DecisionSerializer(decision_payload(approval)).data)


def _error(status_code: int, detail) -> JsonResponse:
    return JsonResponse(
        detail if isinstance(detail, dict) else {"detail": detail}, status=status_code
    )


def _load(project_id: int, pk: int) -> ApprovalRequest | None:
    """The request, read and then the connection given back: a long-poll must not hold one."""
    approval = (
        ApprovalRequest.objects.select_related("decided_by")
        .filter(project_id=project_id, pk=pk)
        .first()
    )
    if not connection.in_atomic_block:
        connection.close()
    return approval


def _authenticate(request):
    key = key_from_request(request)
    if not connection.in_atomic_block:
        connection.close()
    return key


@csrf_exempt
async def approval_status(request, pk: int):
    if request.method != "GET":
        response = _error(405, "Use GET (POST …/cancel to withdraw).")
        response["Allow"] = "GET"
        return response
    key = await sync_to_async(_authenticate)(request)
    if key is None:
        return _error(401, "Send the agent's project key: Authorization: Bearer ck_…")
    raw_wait = request.GET.get("wait", "0")
    try:
        wait = float(raw_wait)
    except ValueError:
        wait = -1
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        return _error(400, {"wait": [f"Seconds from 0 to {MAX_WAIT_SECONDS}."]})
    async with Waiter(pk) as waiter:
        approval = await sync_to_async(_load)(key.project_id, pk)
        if approval is None:
            return _error(404, "No such approval request in this project.")
        if approval.is_pending and wait:
            await waiter.wait(wait)
            approval = await sync_to_async(_load)(key.project_id, pk)
    return JsonResponse(DecisionSerializer(decision_payload(approval)).data)


LONG_POLL_PATH = {
    "get": {
        "operationId": "approvals_status",
        "summary": "The request's decision (long-poll)",
        "description": (
            "With `wait` (seconds, up to 60) the answer comes the moment the request is "
            "decided, or at the timeout with `status: pending`: call again. Act only on "
            "`status: approved`, and only with the returned `arguments` (a reviewer may have "
            "edited them). `expired` is a denial. Another project's request is a 404."
        ),
        "tags": ["approvals"],
        "security": [{"projectKey": []}],
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": f"Seconds to wait for a decision, 0–{MAX_WAIT_SECONDS}.",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            },
        ],
        "responses": {
            "200": {
                "description": "The request now: decided, or still pending at the timeout.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}
                },
            },
            "400": {"description": "`wait` is not a number from 0 to 60."},
            "401": {"description": "No project key, or an unknown or revoked one."},
            "404": {"description": "No such request in this project."},
        },
    }
}


def document_long_poll(result, generator, request, public):
    """Postprocessing hook: the long-poll is an async Django view, so describe it by hand."""
    result.setdefault("paths", {})["/api/v1/approvals/{id}"] = LONG_POLL_PATH
    return result
