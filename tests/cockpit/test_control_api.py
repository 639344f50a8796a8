"""GET /api/v1/agents/<name>/control: what an agent must obey, for its project key."""

import pytest
from django.urls import reverse

from cockpit.interventions import do_pause_agent, do_set_overrides
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


def control_url(name: str) -> str:
    return reverse("api-agent-control", args=[name])


def as_key(client, key: str, url: str):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}")


def test_an_active_agent_reads_active_with_no_overrides(client, project, ingest_key):
    make_agent(project, "refund-agent")

    response = as_key(client, ingest_key, control_url("refund-agent"))

    assert response.status_code == 200
    assert response.json() == {"state": "active", "reason": "", "overrides": {}}
    assert response["Cache-Control"] == "no-store"


def test_a_paused_agent_reads_paused_with_the_reason_and_overrides(
    client, project, ingest_key, people
):
    agent = make_agent(project, "refund-agent")
    do_set_overrides(agent, people["operator"], "Cheaper", downgrade_model="gpt-4o-mini")
    do_pause_agent(agent, people["operator"], "Refunds look wrong")

    response = as_key(client, ingest_key, control_url("refund-agent"))

    assert response.json() == {
        "state": "paused",
        "reason": "Refunds look wrong",
        "overrides": {"downgrade_model": "gpt-4o-mini"},
    }


def test_another_projects_key_gets_404(client, project, other_key):
    make_agent(project, "refund-agent")

    response = as_key(client, other_key, control_url("refund-agent"))

    assert response.status_code == 404


def test_an_unknown_key_gets_401(client, project):
    make_agent(project, "refund-agent")

    response = as_key(client, "ck_not-a-key", control_url("refund-agent"))

    assert response.status_code == 401


def test_no_credentials_get_401_or_403(client, project):
    make_agent(project, "refund-agent")

    response = client.get(control_url("refund-agent"))

    assert response.status_code == 401
    assert "state" not in response.json()


@pytest.mark.parametrize(("person", "status"), [("viewer", 200), ("outsider", 403)])
def test_people_read_it_with_a_cockpit_role(client_as, project, person, status):
    make_agent(project, "refund-agent")

    response = client_as(person).get(control_url("refund-agent"))

    assert response.status_code == status


def test_a_person_names_the_project_when_two_share_an_agent_name(
    client_as, project, other_project, people
):
    make_agent(project, "bot")
    other = make_agent(other_project, "bot")
    do_pause_agent(other, people["operator"], "globex only")
    client = client_as("viewer")

    ambiguous = client.get(control_url("bot"))
    named = client.get(control_url("bot") + "?project=globex")

    assert ambiguous.status_code == 400 and "project" in ambiguous.json()
    assert named.json()["state"] == "paused"


def test_writing_is_not_allowed(client, project, ingest_key):
    make_agent(project, "refund-agent")

    response = client.post(
        control_url("refund-agent"), {"state": "active"}, HTTP_AUTHORIZATION=f"Bearer {ingest_key}"
    )

    assert response.status_code == 405
