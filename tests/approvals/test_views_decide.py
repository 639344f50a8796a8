"""Deciding from the request page: each decision, the checks on its input, the hash it is bound
to, races and late decisions, and who may decide at which level."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils.html import escape

from approvals import engine
from approvals.models import ApprovalEvent, ApprovalRequest, ApprovalVote, arguments_sha256
from tests.approvals.builders import ask, chain, policy
from tests.approvals.conftest import escalate, make_person
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status


def decide(client, request, decision, **fields):
    data = {"decision": decision, "seen_sha256": request.arguments_sha256, **fields}
    return client.post(reverse("approval-decide", args=[request.pk]), data)


def shown(response, message):
    return escape(message) in response.content.decode()


# --- Each decision ------------------------------------------------------------------------------


def test_approving_decides_the_request_and_returns_to_it(client_for, ask_refund, reviewer_l1):
    request = ask_refund()

    response = decide(client_for(reviewer_l1), request, "approve", comment="Looks right.")

    assert response.status_code == 302
    assert response["Location"] == reverse("approval-detail", args=[request.pk])
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.comment) == (
        Status.APPROVED, reviewer_l1, "Looks right."
    )  # fmt: skip
    assert not request.was_edited


def test_the_review_time_runs_from_the_reviewers_first_view(client_for, ask_refund, reviewer_l1):
    request = ask_refund()
    engine.record_view(request, reviewer_l1, now=engine.timezone.now() - timedelta(seconds=42))

    decide(client_for(reviewer_l1), request, "approve")

    vote = ApprovalVote.objects.get(request=request)
    assert vote.review_seconds == pytest.approx(42, abs=2)


def test_a_decision_without_opening_the_request_has_no_review_time(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund()

    decide(client_for(reviewer_l1), request, "approve")

    assert ApprovalVote.objects.get(request=request).review_seconds is None


def test_approving_with_edited_arguments_gives_the_agent_the_edit(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund(arguments={"order": "A-1001", "amount": 4000})
    edited = {"order": "A-1001", "amount": 2500, "note": "partial refund"}

    response = decide(
        client_for(reviewer_l1), request, "approve_edited", arguments=json.dumps(edited)
    )

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.APPROVED and request.decision == "approve_edited"
    assert request.effective_arguments == edited
    assert request.effective_sha256 == arguments_sha256(edited)
    assert request.arguments == {"order": "A-1001", "amount": 4000}


def test_rejecting_with_a_comment_rejects(client_for, ask_refund, reviewer_l1):
    request = ask_refund()

    decide(client_for(reviewer_l1), request, "reject", comment="Already refunded on May 2.")

    request.refresh_from_db()
    assert request.status == Status.REJECTED
    assert request.comment == "Already refunded on May 2."


def test_rejecting_without_a_comment_is_refused_with_a_400_saying_why(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund()

    response = decide(client_for(reviewer_l1), request, "reject", comment="   ")

    assert response.status_code == 400
    assert shown(response, "Say why: a rejection needs a comment.")
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert not ApprovalVote.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"amount": 2500,', "Edited arguments are not valid JSON: Expecting property name"),
        ("[1, 2]", "Edited arguments must be a JSON object ({…}), not a list."),
        ('"refund"', "Edited arguments must be a JSON object ({…}), not a string."),
        ('{"amount": NaN}', "Edited arguments are not valid JSON: NaN is not a JSON number."),
        ("", "Edited arguments are not valid JSON: Expecting value (line 1, column 1)."),
    ],
)
def test_edited_arguments_that_are_not_a_json_object_are_a_400_with_the_reason(
    client_for, ask_refund, reviewer_l1, text, message
):
    request = ask_refund()

    response = decide(client_for(reviewer_l1), request, "approve_edited", arguments=text)

    assert response.status_code == 400
    assert shown(response, message)
    # The reviewer's text comes back in the editor, which stays open.
    assert response.context["editor_open"] is True
    assert escape(text) in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_an_unknown_decision_is_a_400(client_for, ask_refund, reviewer_l1):
    request = ask_refund()

    response = decide(client_for(reviewer_l1), request, "approve_all")

    assert response.status_code == 400
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_a_policy_without_edits_refuses_an_edit(client_for, project, reviewer_l1):
    policy(chain("strict"), allowed_decisions=["approve", "reject"])
    request = ask(project)

    response = decide(client_for(reviewer_l1), request, "approve_edited", arguments="{}")

    assert response.status_code == 400
    assert shown(response, "This policy does not allow “approve_edited”.")
    assert response.context["may_edit"] is False


def test_each_approval_counts_towards_m_of_n(client_for, project, reviewer_l1):
    policy(chain(), approvals_required=2)
    request = ask(project)
    second = make_person("mara", "reviewer", "reviewers-l1")

    decide(client_for(reviewer_l1), request, "approve")
    response = client_for(reviewer_l1).get(reverse("approval-detail", args=[request.pk]))
    assert "1 of 2 approvals" in response.content.decode()
    decide(client_for(second), request, "approve")

    request.refresh_from_db()
    assert request.status == Status.APPROVED


# --- The hash, races and late decisions ---------------------------------------------------------


def test_a_decision_bound_to_other_arguments_is_refused_with_409(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund()

    response = decide(
        client_for(reviewer_l1), request, "approve", seen_sha256=arguments_sha256({"order": "X"})
    )

    assert response.status_code == 409
    assert shown(response, "hash mismatch")
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_the_form_carries_the_hash_of_the_arguments_shown(client_for, ask_refund, reviewer_l1):
    request = ask_refund()

    html = client_for(reviewer_l1).get(reverse("approval-detail", args=[request.pk])).content

    assert (
        f'<input type="hidden" name="seen_sha256" value="{request.arguments_sha256}"'
        in html.decode()
    )


def test_the_second_of_two_racing_reviewers_gets_409_and_is_told_who_won(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund()
    rival = make_person("mara", "reviewer", "reviewers-l1")
    decide(client_for(rival), request, "approve")

    response = decide(client_for(reviewer_l1), request, "reject", comment="No.")

    assert response.status_code == 409
    assert shown(response, "Your decision did not count.")
    assert shown(response, "Too late: this request was already approved by mara.")
    request.refresh_from_db()
    assert (request.status, request.decided_by) == (Status.APPROVED, rival)


def test_a_decision_after_expiry_is_recorded_ignored_and_the_reviewer_told(
    client_for, ask_refund, reviewer_l1
):
    request = ask_refund()
    engine.sweep(now=request.expires_at + timedelta(seconds=1))
    while ApprovalRequest.objects.get(pk=request.pk).is_pending:
        request.refresh_from_db()
        engine.sweep(now=request.level_due_at + timedelta(seconds=1))

    response = decide(client_for(reviewer_l1), request, "approve")

    assert response.status_code == 409
    assert shown(response, "Too late: this request expired (as a denial) before your decision.")
    assert request.events.filter(
        kind=ApprovalEvent.Kind.LATE_DECISION_IGNORED, actor=reviewer_l1
    ).exists()
    request.refresh_from_db()
    assert request.status == Status.EXPIRED


# --- Who may decide ------------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client, ask_refund):
    request = ask_refund()

    response = decide(client, request, "approve")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("person", ["outsider", "viewer", "operator", "commander"])
def test_only_reviewers_may_decide(client_as, ask_refund, person):
    request = ask_refund()

    response = decide(client_as(person), request, "approve")

    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_a_viewer_reads_the_request_without_a_decision_form(client_as, ask_refund):
    request = ask_refund()

    response = client_as("viewer").get(reverse("approval-detail", args=[request.pk]))

    assert response.status_code == 200
    assert 'id="decision-form"' not in response.content.decode()
    assert "Deciding needs the reviewer role" in response.content.decode()


def test_an_l1_reviewer_cannot_decide_at_l3(client_for, ask_refund, reviewer_l1):
    request = escalate(ask_refund(), 3)

    page = client_for(reviewer_l1).get(reverse("approval-detail", args=[request.pk]))
    response = decide(client_for(reviewer_l1), request, "approve")

    assert 'id="decision-form"' not in page.content.decode()
    assert response.status_code == 403
    assert shown(response, "The request is at L3; you review at L1")
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_an_l1_reviewer_decides_at_l3_when_the_chain_lets_earlier_levels_decide(
    client_for, project, reviewer_l1
):
    policy(chain("lenient", earlier_levels_may_decide=True))
    request = escalate(ask(project), 3)

    response = decide(client_for(reviewer_l1), request, "approve")

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.APPROVED


def test_an_l3_reviewer_may_take_an_l1_request(client_for, ask_refund, reviewer_l3):
    request = ask_refund()

    response = decide(client_for(reviewer_l3), request, "approve")

    assert response.status_code == 302


def test_a_reviewer_outside_the_chain_is_told_so(client_as, ask_refund):
    request = ask_refund()

    response = decide(client_as("reviewer"), request, "approve")

    assert response.status_code == 403
    assert shown(response, "You are not a reviewer on this request's escalation chain.")


def test_an_admin_decides_at_any_level(client_as, ask_refund):
    request = escalate(ask_refund(), 4)

    response = decide(client_as("admin"), request, "approve")

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.APPROVED


def test_the_agents_owner_may_only_reject(client_for, project, ask_refund, reviewer_l1):
    make_agent(project, "refund-bot", owner=reviewer_l1)
    request = ask_refund()

    page = client_for(reviewer_l1).get(reverse("approval-detail", args=[request.pk]))
    response = decide(client_for(reviewer_l1), request, "approve")

    assert 'id="approve-button"' not in page.content.decode()
    assert 'id="reject-button"' in page.content.decode()
    assert response.status_code == 403
    assert shown(response, "You own this agent")


def test_deciding_needs_a_post(client_for, ask_refund, reviewer_l1):
    request = ask_refund()

    response = client_for(reviewer_l1).get(reverse("approval-decide", args=[request.pk]))

    assert response.status_code == 405
