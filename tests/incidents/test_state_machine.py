"""The incident status machine: allowed moves only, a note with each, monotonic timestamps,
reopening, and the named durations computed from the timestamps."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents.actions import do_save_postmortem, do_set_postmortem_status, do_transition
from incidents.models import Incident, Severity, Status, TimelineEvent

pytestmark = pytest.mark.django_db


def move(incident, status, people, at=None, note="moving on"):
    return do_transition(incident, status, user=people["commander"], note=note, at=at)


def test_a_new_incident_starts_in_triage_detected_now(incident):
    assert incident.status == Status.TRIAGE
    assert incident.detected_at <= timezone.now()
    assert incident.acknowledged_at is None
    assert incident.status_changed_at == incident.detected_at


def test_it_walks_the_whole_way_and_stamps_each_step(open_incident, people):
    incident = open_incident(severity=Severity.SEV4)
    for status in (Status.ACTIVE, Status.MITIGATED, Status.RESOLVED, Status.POSTMORTEM):
        incident = move(incident, status, people)
    incident = move(incident, Status.CLOSED, people)
    stamps = [
        incident.detected_at,
        incident.acknowledged_at,
        incident.mitigated_at,
        incident.resolved_at,
        incident.postmortem_at,
        incident.closed_at,
    ]
    assert all(stamps)
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Status.TRIAGE, Status.MITIGATED),
        (Status.TRIAGE, Status.RESOLVED),
        (Status.TRIAGE, Status.CLOSED),
        (Status.ACTIVE, Status.RESOLVED),
        (Status.ACTIVE, Status.TRIAGE),
        (Status.MITIGATED, Status.CLOSED),
    ],
)
def test_it_refuses_to_skip_a_step(incident, people, start, target):
    if start != Status.TRIAGE:
        incident = move(incident, Status.ACTIVE, people)
    if start == Status.MITIGATED:
        incident = move(incident, Status.MITIGATED, people)
    with pytest.raises(ValidationError) as error:
        move(incident, target, people)
    assert "status" in error.value.message_dict
    assert Incident.objects.get(pk=incident.pk).status == start


def test_every_change_needs_a_note(incident, people):
    with pytest.raises(ValidationError) as error:
        move(incident, Status.ACTIVE, people, note="   ")
    assert "note" in error.value.message_dict


def test_a_change_cannot_be_dated_before_the_last_one(incident, people):
    incident = move(incident, Status.ACTIVE, people)
    with pytest.raises(ValidationError) as error:
        move(incident, Status.MITIGATED, people, at=incident.acknowledged_at - timedelta(seconds=1))
    assert "at" in error.value.message_dict


def test_a_change_cannot_be_dated_in_the_future(incident, people):
    with pytest.raises(ValidationError) as error:
        move(incident, Status.ACTIVE, people, at=timezone.now() + timedelta(hours=1))
    assert "at" in error.value.message_dict


def test_a_change_may_be_backdated_after_the_last_one(open_incident, people):
    incident = open_incident(detected_at=timezone.now() - timedelta(minutes=10))
    earlier = timezone.now() - timedelta(minutes=5)
    incident = move(incident, Status.ACTIVE, people, at=earlier)
    assert incident.acknowledged_at == earlier


def test_reopening_clears_the_later_stamps_and_counts(open_incident, people):
    incident = open_incident(severity=Severity.SEV4)
    for status in (Status.ACTIVE, Status.MITIGATED, Status.RESOLVED):
        incident = move(incident, status, people)
    acknowledged = incident.acknowledged_at
    resolved = incident.resolved_at
    incident = move(incident, Status.ACTIVE, people, note="it came back")
    assert incident.status == Status.ACTIVE
    assert incident.acknowledged_at == acknowledged
    assert incident.mitigated_at is None and incident.resolved_at is None
    assert incident.reopened_count == 1
    # After a reopen the next change is still no earlier than the reopen itself.
    with pytest.raises(ValidationError):
        move(incident, Status.MITIGATED, people, at=resolved)


def test_a_declined_incident_can_return_to_triage(incident, people):
    incident = move(incident, Status.DECLINED, people)
    assert incident.closed_at is not None
    incident = move(incident, Status.TRIAGE, people, note="it is real after all")
    assert incident.status == Status.TRIAGE
    assert incident.closed_at is None


def test_a_cancelled_incident_is_final(incident, people):
    incident = move(incident, Status.CANCELLED, people)
    assert incident.allowed_next() == []
    with pytest.raises(ValidationError):
        move(incident, Status.ACTIVE, people)


def test_a_sev2_incident_cannot_close_without_a_published_postmortem(open_incident, people):
    incident = open_incident(severity=Severity.SEV2)
    for status in (Status.ACTIVE, Status.MITIGATED, Status.RESOLVED):
        incident = move(incident, status, people)
    assert Status.CLOSED not in incident.allowed_next()
    incident = move(incident, Status.POSTMORTEM, people)
    with pytest.raises(ValidationError) as error:
        move(incident, Status.CLOSED, people)
    assert "postmortem" in error.value.message_dict["status"][0]
    postmortem = do_save_postmortem(incident, user=people["commander"], body="## Summary\nDone.")
    postmortem = do_set_postmortem_status(postmortem, "in_review", user=people["commander"])
    with pytest.raises(ValidationError):
        move(Incident.objects.get(pk=incident.pk), Status.CLOSED, people)
    do_set_postmortem_status(postmortem, "published", user=people["commander"])
    incident = move(Incident.objects.get(pk=incident.pk), Status.CLOSED, people)
    assert incident.status == Status.CLOSED


def test_a_sev4_incident_may_close_straight_from_resolved(open_incident, people):
    incident = open_incident(severity=Severity.SEV4)
    for status in (Status.ACTIVE, Status.MITIGATED, Status.RESOLVED, Status.CLOSED):
        incident = move(incident, status, people)
    assert incident.status == Status.CLOSED


def test_each_change_lands_on_the_timeline_with_its_note(incident, people):
    move(incident, Status.ACTIVE, people, note="paging payments")
    event = TimelineEvent.objects.filter(incident=incident, kind="status").last()
    assert event.text == "paging payments"
    assert event.data == {"from": "triage", "to": "active"}
    assert event.actor == people["commander"]


def test_durations_come_from_the_named_timestamps(open_incident, people):
    now = timezone.now()
    incident = open_incident(started_at=now - timedelta(minutes=50))
    detected = incident.detected_at
    incident = move(incident, Status.ACTIVE, people, at=detected + timedelta(seconds=1))
    incident = move(incident, Status.MITIGATED, people, at=detected + timedelta(seconds=2))
    assert incident.time_to_detect == detected - (now - timedelta(minutes=50))
    assert incident.time_to_acknowledge == timedelta(seconds=1)
    assert incident.time_to_mitigate == incident.mitigated_at - incident.started_at
    assert incident.time_to_resolve is None


def test_impact_cannot_start_after_detection(open_incident):
    incident = open_incident(started_at=timezone.now() + timedelta(hours=1))
    assert incident.started_at == incident.detected_at


def test_open_incidents_are_counted_per_agent_for_the_fleet(open_incident, people, agent, project):
    from tests.factories import make_agent

    other = make_agent(project, "support-triage")
    open_incident()
    open_incident(agents=[agent, other])
    closed = open_incident()
    move(closed, Status.DECLINED, people)
    assert Incident.objects.open_counts([agent.pk, other.pk]) == {agent.pk: 2, other.pk: 1}
