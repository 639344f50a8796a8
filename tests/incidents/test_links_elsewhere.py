"""The other pages link to incidents: "Open incident" on the fleet, an agent, a run and a span
(for commanders), and the run page lists the incidents its run is linked to."""

import pytest
from django.urls import reverse

from incidents.actions import do_link_run

pytestmark = pytest.mark.django_db


def open_link(body: bytes) -> bool:
    return b">Open incident</a>" in body


def test_the_run_page_offers_commanders_to_open_an_incident_from_the_run(client_as, run):
    url = reverse("run-detail", args=[run.trace_id])
    body = client_as("commander").get(url).content
    assert open_link(body)
    assert f"/incidents/new/?run={run.trace_id}&amp;project=acme".encode() in body


def test_viewers_see_no_open_incident_links(client_as, run, agent):
    client = client_as("viewer")
    for url in (
        reverse("fleet"),
        reverse("agent", args=[agent.name]),
        reverse("run-detail", args=[run.trace_id]),
    ):
        assert not open_link(client.get(url).content), url


def test_the_span_details_carry_the_span_into_the_form(client_as, run):
    span = run.spans.get(kind="tool")
    body = (
        client_as("commander")
        .get(reverse("span-detail", args=[run.trace_id, span.span_id]))
        .content
    )
    assert f"?run={run.trace_id}&amp;span={span.span_id}&amp;project=acme".encode() in body


def test_the_agent_page_and_the_fleet_link_to_the_form(client_as, agent):
    client = client_as("commander")
    assert (
        b"/incidents/new/?agent=refund-agent&amp;project=acme"
        in client.get(reverse("agent", args=[agent.name])).content
    )
    assert open_link(client.get(reverse("fleet")).content)


def test_the_run_page_lists_the_incidents_of_the_run(client_as, incident, run, people):
    do_link_run(incident, run, relation="affected", user=people["commander"])
    body = client_as("viewer").get(reverse("run-detail", args=[run.trace_id])).content.decode()
    assert 'id="run-incidents"' in body
    assert f"#{incident.pk} Refunds sent twice" in body
    assert "as affected" in body


def test_a_run_without_incidents_shows_no_incidents_card(client_as, run):
    body = client_as("viewer").get(reverse("run-detail", args=[run.trace_id])).content
    assert b'id="run-incidents"' not in body


def test_a_commander_links_a_run_to_an_open_incident_from_the_run_page(client_as, incident, run):
    client = client_as("commander")
    page = client.get(reverse("run-detail", args=[run.trace_id])).content.decode()
    assert "Link this run to" in page
    assert f'<option value="{incident.pk}">#{incident.pk} Refunds sent twice (SEV3)' in page
    response = client.post(
        reverse("incident-link-run"),
        {
            "incident": incident.pk,
            "trace_id": run.trace_id,
            "run_project": run.project_id,
            "relation": "evidence",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == f"/traces/{run.trace_id}/?project=acme"
    assert incident.trace_links.get().relation == "evidence"


def test_closed_incidents_are_not_offered_for_linking(client_as, incident, run, people):
    from incidents.actions import do_transition

    do_transition(incident, "declined", user=people["commander"], note="not ours")
    page = client_as("commander").get(reverse("run-detail", args=[run.trace_id])).content
    assert b"Link this run to" not in page
