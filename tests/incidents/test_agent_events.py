"""Automatic timeline events of the affected agents in the incident's window — releases,
pauses, approval requests and decisions — and acting on them: freezing pending approvals."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest
from cockpit.api import record_release
from cockpit.interventions import do_pause_agent
from incidents.actions import do_freeze_approvals, do_update_details, sync_agent_events
from incidents.models import TimelineEvent
from tests.approvals.builders import ask
from tests.factories import make_agent
from traces.models import ReleaseMarker

pytestmark = pytest.mark.django_db


def lines(incident, kind):
    return list(
        TimelineEvent.objects.filter(incident=incident, kind=kind).values_list("text", flat=True)
    )


def test_a_release_of_an_affected_agent_lands_on_the_timeline(
    incident, project, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        record_release(project, agent=agent.name, version="3.2.0", model="claude-sonnet-4")
    assert lines(incident, "release") == ["refund-agent released 3.2.0 (model claude-sonnet-4)."]


def test_a_release_of_another_agent_does_not(incident, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        record_release(project, agent="someone-else", version="1.0")
    assert lines(incident, "release") == []


def test_a_pause_by_an_operator_lands_on_the_timeline(
    incident, agent, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        do_pause_agent(agent, people["operator"], "error spike")
    assert lines(incident, "intervention") == ["refund-agent paused by operator: error spike"]


def test_approval_requests_and_decisions_land_on_the_timeline(
    incident, project, agent, people, django_capture_on_commit_callbacks
):
    from approvals.engine import do_cancel

    with django_capture_on_commit_callbacks(execute=True):
        request = ask(project, agent=agent.name, summary="Refund order A-1001")
    with django_capture_on_commit_callbacks(execute=True):
        do_cancel(request)
    texts = lines(incident, "approval")
    assert (
        texts[0] == "refund-agent asked for approval (high risk, 4,000.00 USD): Refund order A-1001"
    )
    assert (
        texts[1] == f"Approval request #{request.pk} of refund-agent cancelled: Refund order A-1001"
    )


def test_an_agent_joining_brings_its_recent_history_along(incident, project, people):
    other = make_agent(project, "sales-assistant")
    ReleaseMarker.objects.create(
        agent=other, version="1.2.2", at=timezone.now() - timedelta(minutes=20)
    )
    ReleaseMarker.objects.create(
        agent=other, version="1.0.0", at=timezone.now() - timedelta(days=2)
    )
    do_update_details(incident, user=people["commander"], agents=[*incident.agents.all(), other])
    assert lines(incident, "release") == ["sales-assistant released 1.2.2."]
    # Recording again adds nothing: automatic events are idempotent.
    assert sync_agent_events(incident) == 0


def test_freezing_rejects_the_pending_approvals_citing_the_incident(
    incident, project, agent, people, django_capture_on_commit_callbacks
):
    first = ask(project, agent=agent.name)
    second = ask(project, agent=agent.name)
    elsewhere = ask(project, agent="support-triage")
    with django_capture_on_commit_callbacks(execute=True):
        frozen = do_freeze_approvals(incident, user=people["commander"], reason="refunds doubled")
    assert {request.pk for request in frozen} == {first.pk, second.pk}
    for request in (first, second):
        request.refresh_from_db()
        assert request.status == ApprovalRequest.Status.REJECTED
        assert request.comment == f"Incident #{incident.pk}: refunds doubled"
        assert request.decided_by == people["commander"]
    elsewhere.refresh_from_db()
    assert elsewhere.status == ApprovalRequest.Status.PENDING
    assert lines(incident, "action") == [
        "Froze 2 pending approvals of refund-agent: refunds doubled"
    ]
    rejected = [t for t in lines(incident, "approval") if " rejected by commander" in t]
    assert len(rejected) == 2


def test_freezing_from_the_page_says_how_many(client_as, incident, project, agent):
    ask(project, agent=agent.name)
    response = client_as("commander").post(
        reverse("incident-freeze", args=[incident.pk]), {"reason": "stop"}, follow=True
    )
    assert b"Rejected 1 pending approval." in response.content
