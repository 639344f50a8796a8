"""Interventions: operators pause, resume, stop and override agents, with a reason, audited."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from cockpit.interventions import (
    InterventionError,
    agent_interventions,
    control_state,
    do_pause_agent,
    do_resume_agent,
    do_set_overrides,
    do_stop_agent,
)
from cockpit.models import Intervention
from tests.factories import make_agent
from traces.models import Agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(project):
    return make_agent(project, "refund-agent")


def test_pausing_records_who_why_and_the_state_before_and_after(agent, people):
    intervention = do_pause_agent(agent, people["operator"], "Refunds look wrong")

    agent.refresh_from_db()
    assert (agent.state, agent.state_reason) == ("paused", "Refunds look wrong")
    assert intervention.user == people["operator"]
    assert intervention.action == "pause"
    assert intervention.before == {"state": "active", "reason": ""}
    assert intervention.after == {"state": "paused", "reason": "Refunds look wrong"}


def test_resume_and_stop_follow_the_allowed_transitions(agent, people):
    operator = people["operator"]
    do_stop_agent(agent, operator, "Runaway loop")
    with pytest.raises(InterventionError):
        do_pause_agent(agent, operator, "again")
    do_resume_agent(agent, people["admin"], "Fixed the prompt")

    agent.refresh_from_db()
    assert (agent.state, agent.state_reason) == ("active", "")
    assert [i.action for i in agent_interventions(agent)] == ["resume", "stop"]


def test_pausing_a_paused_agent_is_refused_and_not_audited(agent, people):
    do_pause_agent(agent, people["operator"], "once")

    with pytest.raises(InterventionError, match="is paused"):
        do_pause_agent(agent, people["operator"], "twice")

    assert Intervention.objects.count() == 1


@pytest.mark.parametrize("person", ["viewer", "reviewer", "commander", "outsider"])
def test_people_without_the_operator_role_cannot_intervene(agent, people, person):
    with pytest.raises(PermissionDenied):
        do_pause_agent(agent, people[person], "I want to")

    agent.refresh_from_db()
    assert agent.state == "active"
    assert not Intervention.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required(agent, people, reason):
    with pytest.raises(ValidationError) as error:
        do_pause_agent(agent, people["operator"], reason)

    assert "reason" in error.value.message_dict
    assert not Intervention.objects.exists()


def test_overrides_are_set_cleared_and_audited(agent, people):
    do_set_overrides(
        agent,
        people["operator"],
        "Cap spend during the incident",
        max_cost_per_run_usd="0.5",
        downgrade_model="gpt-4o-mini",
        max_steps=8,
    )
    second = do_set_overrides(agent, people["operator"], "Steps are fine again", max_steps="")

    assert control_state(agent) == {
        "state": "active",
        "reason": "",
        "overrides": {"max_cost_per_run_usd": "0.5000", "downgrade_model": "gpt-4o-mini"},
    }
    assert second.before["overrides"]["max_steps"] == 8
    assert "max_steps" not in second.after["overrides"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_cost_per_run_usd", "lots"), ("max_cost_per_run_usd", "-1"), ("max_steps", "0"),
     ("max_steps", "two"), ("temperature", "0")],
)  # fmt: skip
def test_bad_overrides_are_refused_naming_the_field(agent, people, field, value):
    with pytest.raises(ValidationError) as error:
        do_set_overrides(agent, people["operator"], "why", **{field: value})

    assert field in error.value.message_dict


def test_the_audit_trail_is_append_only(agent, people):
    intervention = do_pause_agent(agent, people["operator"], "Refunds look wrong")
    intervention.reason = "something nicer"

    with pytest.raises(ValueError, match="append-only"):
        intervention.save()


def test_an_intervention_refreshes_the_fleet_and_the_agent_page_after_commit(
    agent, people, django_capture_on_commit_callbacks
):
    with mock.patch("cockpit.realtime._send") as send:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(InterventionError):
            do_resume_agent(agent, people["operator"], "not paused")
        assert send.call_count == 0  # a refused change announces nothing
        with django_capture_on_commit_callbacks(execute=True):
            do_pause_agent(agent, people["operator"], "Refunds look wrong")

    groups = [call.args[0] for call in send.call_args_list]
    assert groups == ["live.fleet", f"live.agent.{agent.pk}"]


# --- The form endpoint -----------------------------------------------------------------------


def intervene(client, agent, **data):
    return client.post(reverse("agent-intervene", args=[agent.name]), data)


def test_an_operator_pauses_from_the_agent_page(client_as, agent):
    response = intervene(client_as("operator"), agent, action="pause", reason="Looks wrong")

    assert response.status_code == 302
    assert response["Location"] == "/agents/refund-agent/"
    agent.refresh_from_db()
    assert agent.state == Agent.State.PAUSED


def test_a_viewer_gets_403_and_nothing_changes(client_as, agent):
    response = intervene(client_as("viewer"), agent, action="pause", reason="Looks wrong")

    assert response.status_code == 403
    agent.refresh_from_db()
    assert agent.state == Agent.State.ACTIVE


def test_the_form_without_a_reason_changes_nothing_and_says_why(client_as, agent):
    client = client_as("operator")

    response = intervene(client, agent, action="stop", reason="")

    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.state == Agent.State.ACTIVE
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == ["Reason: Say why: a reason is required."]


def test_the_form_sets_overrides(client_as, agent):
    intervene(
        client_as("admin"),
        agent,
        action="override",
        reason="Cheaper model",
        downgrade_model="gpt-4o-mini",
        max_cost_per_run_usd="0.25",
    )

    assert control_state(agent)["overrides"] == {
        "max_cost_per_run_usd": "0.2500",
        "downgrade_model": "gpt-4o-mini",
    }
    assert agent.control.max_cost_per_run_usd == Decimal("0.25")


def test_the_form_refuses_an_unknown_action(client_as, agent):
    intervene(client_as("operator"), agent, action="delete", reason="x")

    assert not Intervention.objects.exists()
