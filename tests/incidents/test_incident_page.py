"""The incident page: what viewers and commanders see, its live parts, and its actions."""

import pytest
from django.urls import reverse

from cockpit.models import Intervention
from incidents.actions import do_add_note
from incidents.models import IncidentRole, Status, TimelineEvent
from traces.models import Agent

pytestmark = pytest.mark.django_db


def test_a_viewer_sees_the_header_timeline_and_side_panels_without_controls(
    client_as, incident, people
):
    do_add_note(incident, user=people["commander"], text="<script>alert(1)</script> seen at 10:02")
    response = client_as("viewer").get(reverse("incident-detail", args=[incident.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Refunds sent twice" in body
    assert "SEV3" in body and "triage" in body
    assert 'ws-connect="/ws/live/incident.' in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; seen at 10:02" in body
    assert "<script>alert(1)</script>" not in body
    assert "Change status" not in body
    assert "Add note" not in body


def test_a_commander_sees_the_next_statuses_and_the_note_form(client_as, incident):
    body = client_as("commander").get(reverse("incident-detail", args=[incident.pk])).content
    body = body.decode()
    assert "Change status" in body
    assert 'value="active"' in body and 'value="declined"' in body
    assert "Add note" in body


def test_the_opener_is_commander_in_the_header(client_as, incident):
    body = client_as("viewer").get(reverse("incident-detail", args=[incident.pk])).content
    assert b"Commander: <strong>commander</strong>" in body


@pytest.mark.parametrize("part", ["head", "timeline", "side", "blast"])
def test_each_live_part_renders_alone_for_htmx(client_as, incident, part):
    response = client_as("viewer").get(
        reverse("incident-detail", args=[incident.pk]), {"part": part}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"<html" not in response.content
    ids = {
        "head": "incident-head",
        "timeline": "incident-timeline",
        "side": "incident-side",
        "blast": "incident-blast",
    }
    assert f'id="{ids[part]}"'.encode() in response.content


def test_changing_status_redirects_back_with_the_change_made(client_as, incident):
    response = client_as("commander").post(
        reverse("incident-status", args=[incident.pk]), {"status": "active", "note": "on it"}
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == Status.ACTIVE


def test_a_skipped_step_is_refused_with_a_message(client_as, incident):
    client = client_as("commander")
    response = client.post(
        reverse("incident-status", args=[incident.pk]),
        {"status": "resolved", "note": "done?"},
        follow=True,
    )
    incident.refresh_from_db()
    assert incident.status == Status.TRIAGE
    assert b"cannot move to resolved" in response.content


def test_a_note_is_added_to_the_timeline(client_as, incident, people):
    client_as("commander").post(
        reverse("incident-note", args=[incident.pk]), {"text": "Rolled back"}
    )
    note = TimelineEvent.objects.get(incident=incident, kind="note")
    assert note.text == "Rolled back"
    assert note.actor == people["commander"]


def test_starring_an_event_marks_it_for_the_postmortem(client_as, incident):
    event = incident.events.first()
    response = client_as("commander").post(
        reverse("incident-star", args=[incident.pk, event.pk]),
        {"starred": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert b'aria-pressed="true"' in response.content
    event.refresh_from_db()
    assert event.starred


def test_an_event_of_another_incident_cannot_be_starred_through_this_one(client_as, open_incident):
    first, second = open_incident(), open_incident(title="Other")
    event = second.events.first()
    response = client_as("commander").post(
        reverse("incident-star", args=[first.pk, event.pk]), {"starred": "1"}
    )
    assert response.status_code == 404


def test_handing_off_the_commander_role_ends_the_previous_holder(client_as, incident, people):
    people["admin"].groups.add(*people["commander"].groups.all())
    client_as("commander").post(
        reverse("incident-role", args=[incident.pk]),
        {"role": "commander", "person": people["admin"].pk},
    )
    roles = list(IncidentRole.objects.filter(incident=incident, role="commander"))
    assert [(r.user.username, r.ended_at is None) for r in roles] == [
        ("commander", False),
        ("admin", True),
    ]
    handoff = TimelineEvent.objects.filter(incident=incident, kind="role").last()
    assert handoff.text == "Commander handed off from commander to admin."


def test_subject_experts_may_be_several(client_as, incident, people):
    client = client_as("commander")
    for name in ("operator", "reviewer"):
        client.post(
            reverse("incident-role", args=[incident.pk]),
            {"role": "expert", "person": people[name].pk},
        )
    current = IncidentRole.objects.filter(incident=incident, role="expert", ended_at__isnull=True)
    assert current.count() == 2


def test_only_a_commander_may_be_given_the_commander_role(client_as, incident, people):
    response = client_as("commander").post(
        reverse("incident-role", args=[incident.pk]),
        {"role": "commander", "person": people["viewer"].pk},
        follow=True,
    )
    assert b"does not hold the commander role" in response.content
    assert incident.commander == people["commander"]


def test_pausing_the_affected_agents_goes_through_the_intervention_audit(
    client_as, incident, agent, people
):
    response = client_as("commander").post(
        reverse("incident-pause", args=[incident.pk]), {"reason": "sending refunds twice"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.state == Agent.State.PAUSED
    audit = Intervention.objects.get(agent=agent)
    assert audit.reason.startswith(f"Incident #{incident.pk}: sending refunds twice")
    # A commander without the operator role acts for the incident: the audit names them.
    assert audit.user is None and "(by commander)" in audit.reason
    event = TimelineEvent.objects.get(incident=incident, kind="intervention")
    assert event.text == "Paused refund-agent: sending refunds twice"
    assert event.source == f"intervention:{audit.pk}"


def test_an_admin_pausing_is_audited_under_their_own_name(client_as, incident, agent, people):
    client_as("admin").post(reverse("incident-pause", args=[incident.pk]), {"reason": "stop it"})
    assert Intervention.objects.get(agent=agent).user == people["admin"]


def test_pausing_when_nothing_is_active_says_so(client_as, incident, agent):
    Agent.objects.filter(pk=agent.pk).update(state=Agent.State.PAUSED)
    response = client_as("commander").post(
        reverse("incident-pause", args=[incident.pk]), {"reason": "again"}, follow=True
    )
    assert b"No active agent to pause" in response.content
