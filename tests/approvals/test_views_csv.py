"""The decisions export: one row per closed request with its context, for calibrating
policies."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals import engine
from tests.approvals.builders import ask

pytestmark = pytest.mark.django_db

COLUMNS = [
    "id", "created", "decided", "status", "decision", "decided_by", "level", "escalations",
    "agent", "action", "amount", "currency", "risk_tier", "stated_risk", "policy",
    "arguments_sha256", "edited", "review_seconds", "comment",
]  # fmt: skip


def export(client, **params):
    response = client.get(reverse("approval-decisions-csv"), params)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return response, list(csv.DictReader(io.StringIO(body)))


def test_it_exports_each_decision_with_its_context(client_as, ask_refund, reviewer_l3):
    request = ask_refund(risk="medium", arguments={"order": "A-1001", "amount": 4000})
    engine.sweep(now=request.level_due_at + timedelta(seconds=1))
    engine.sweep(now=request.level_due_at + timedelta(minutes=10, seconds=2))
    engine.record_view(request, reviewer_l3, now=timezone.now() - timedelta(seconds=30))
    engine.do_decide(
        request.pk, reviewer_l3, "approve_edited", comment="Half now, half after the audit.",
        edited_arguments={"order": "A-1001", "amount": 2000},
        seen_sha256=request.arguments_sha256, review_seconds=31.25,
    )  # fmt: skip
    request.refresh_from_db()

    response, rows = export(client_as("viewer"))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="approval-decisions-')
    assert list(rows[0]) == COLUMNS
    assert rows == [
        {
            "id": str(request.pk),
            "created": request.created_at.isoformat(),
            "decided": request.decided_at.isoformat(),
            "status": "approved",
            "decision": "approve_edited",
            "decided_by": "otto",
            "level": "3",
            "escalations": "2",
            "agent": "refund-bot",
            "action": "refund",
            "amount": "4000",
            "currency": "USD",
            "risk_tier": "high",
            "stated_risk": "medium",
            "policy": "large refunds",
            "arguments_sha256": request.arguments_sha256,
            "edited": "yes",
            "review_seconds": "31.2",
            "comment": "Half now, half after the audit.",
        }
    ]


def test_it_exports_every_closed_request_oldest_decision_first_and_no_pending_one(
    client_as, ask_refund, reviewer_l1
):
    rejected = ask_refund()
    engine.do_decide(
        rejected.pk, reviewer_l1, "reject", comment="No.", seen_sha256=rejected.arguments_sha256
    )
    cancelled = engine.do_cancel(ask_refund())
    ask_refund()  # pending

    _, rows = export(client_as("viewer"))

    assert [(row["id"], row["status"], row["edited"]) for row in rows] == [
        (str(rejected.pk), "rejected", "no"),
        (str(cancelled.pk), "cancelled", "no"),
    ]
    assert rows[1]["decided_by"] == "" and rows[1]["review_seconds"] == ""


def test_the_window_is_chosen_in_days(client_as, project, refunds_policy, reviewer_l1):
    old = ask(project, now=timezone.now() - timedelta(days=50))
    engine.do_decide(
        old.pk, reviewer_l1, "approve", seen_sha256=old.arguments_sha256,
        now=old.created_at + timedelta(minutes=1),
    )  # fmt: skip
    client = client_as("viewer")

    assert export(client)[1] == []
    assert [row["id"] for row in export(client, days="60")[1]] == [str(old.pk)]
    assert export(client, days="nonsense")[1] == []


def test_text_that_a_spreadsheet_would_run_as_a_formula_is_defused(
    client_as, project, refunds_policy, reviewer_l1
):
    request = ask(project, action='=HYPERLINK("http://evil")')
    engine.do_decide(
        request.pk, reviewer_l1, "reject", comment="+1 fraud",
        seen_sha256=request.arguments_sha256,
    )  # fmt: skip

    _, rows = export(client_as("viewer"))

    assert rows[0]["action"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["comment"] == "'+1 fraud"


def test_anonymous_is_sent_to_log_in_and_an_outsider_refused(client, client_as, db):
    assert client.get(reverse("approval-decisions-csv"))["Location"].startswith("/login/")
    assert client_as("outsider").get(reverse("approval-decisions-csv")).status_code == 403
