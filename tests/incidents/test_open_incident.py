"""Opening an incident by hand, from wherever it makes sense: the form carries the context of
the fleet, an agent, a run, a span or an approval request along."""

import pytest
from django.urls import reverse

from approvals.engine import do_create_request
from incidents.models import Incident, TimelineEvent
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


def new_form(client, **params):
    return client.get(reverse("incident-new"), params)


def test_from_a_run_the_form_carries_the_run_its_agent_and_its_start(client_as, run):
    response = new_form(client_as("commander"), run=run.trace_id)
    form = response.context["form"]
    assert form.initial["run"] == run.trace_id
    assert form.initial["agents"] == [run.agent.pk]
    assert form.initial["started_at"] == run.started_at
    assert form.initial["title"].startswith("refund-agent: ")
    assert b"Opened from" in response.content


def test_from_a_span_the_title_names_the_span_and_a_tool_suggests_the_tool_class(client_as, run):
    tool = run.spans.get(kind="tool")
    tool.error_type = "TimeoutError"
    tool.save()
    form = new_form(client_as("commander"), run=run.trace_id, span=tool.span_id).context["form"]
    assert form.initial["span"] == tool.span_id
    assert "(TimeoutError)" in form.initial["title"]
    assert form.initial["failure_class"] == "tool"


def test_from_an_agent_page_the_agent_is_ticked(client_as, agent):
    form = new_form(client_as("commander"), agent=agent.name).context["form"]
    assert form.initial["agents"] == [agent.pk]
    assert form.initial["project"] == agent.project_id


def test_from_an_approval_the_request_and_its_agent_come_along(client_as, project, agent):
    approval, _ = do_create_request(
        project,
        {
            "idempotency_key": "k1",
            "agent": agent.name,
            "action": "issue_refund",
            "arguments": {"amount": 4000},
            "summary": "Refund $4,000 to order A-1",
            "risk": "high",
        },
    )
    response = new_form(client_as("commander"), approval=approval.pk, agent=agent.name)
    form = response.context["form"]
    assert form.initial["approval"] == approval.pk
    assert form.initial["agents"] == [agent.pk]
    assert form.initial["title"] == "refund-agent: Refund $4,000 to order A-1"
    assert form.initial["failure_class"] == "policy"


def test_the_fleet_link_opens_an_empty_form(client_as, project):
    response = new_form(client_as("commander"))
    assert response.status_code == 200
    assert response.context["form"].initial == {"project": project.pk}


def test_submitting_opens_it_links_the_run_and_says_where_it_came_from(client_as, run, people):
    tool = run.spans.get(kind="tool")
    response = client_as("commander").post(
        reverse("incident-new"),
        {
            "project": run.project_id,
            "title": "Refunds sent twice",
            "severity": 2,
            "summary": "Customers got two refunds.",
            "agents": [run.agent_id],
            "failure_class": "tool",
            "failure_chain": "Retry without idempotency\n\nDuplicate refund",
            "run": run.trace_id,
            "span": tool.span_id,
            "relation": "trigger",
        },
    )
    incident = Incident.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("incident-detail", args=[incident.pk])
    assert incident.severity == 2
    assert incident.failure_chain == ["Retry without idempotency", "Duplicate refund"]
    assert incident.commander == people["commander"]
    link = incident.trace_links.get()
    assert (link.run, link.span_id, link.relation) == (run, tool.span_id, "trigger")
    opened = TimelineEvent.objects.filter(incident=incident, kind="status").first()
    assert opened.text == (
        f"Opened from span {tool.span_id} of run {run.trace_id} as SEV2 by commander."
    )


def test_agents_of_another_project_are_refused(client_as, project, other_project):
    stranger = make_agent(other_project, "stranger")
    response = client_as("commander").post(
        reverse("incident-new"),
        {"project": project.pk, "title": "x", "severity": 3, "agents": [stranger.pk]},
    )
    assert response.status_code == 200
    assert "agents" in response.context["form"].errors
    assert not Incident.objects.exists()


def test_a_title_is_required(client_as, project):
    response = client_as("commander").post(
        reverse("incident-new"), {"project": project.pk, "title": "", "severity": 3}
    )
    assert "title" in response.context["form"].errors
