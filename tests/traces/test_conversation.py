"""Every run of a conversation, in order."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run

pytestmark = pytest.mark.django_db


def test_it_lists_the_conversation_runs_oldest_first(client_as, project):
    agent = make_agent(project)
    now = timezone.now()
    second = make_run(project, agent, conversation_id="c-1", name="turn two", started_at=now)
    first = make_run(
        project, agent, conversation_id="c-1", name="turn one", started_at=now - timedelta(hours=1)
    )
    make_run(project, agent, conversation_id="c-2", name="another conversation")

    response = client_as("viewer").get(reverse("conversation-detail", args=["c-1"]))

    assert response.status_code == 200
    assert response.context["runs"] == [first, second]
    html = response.content.decode()
    assert html.index("turn one") < html.index("turn two")
    assert "another conversation" not in html
    assert reverse("run-detail", args=[first.trace_id]) in html


def test_an_unknown_conversation_is_404(client_as):
    assert client_as("viewer").get(reverse("conversation-detail", args=["nope"])).status_code == 404


def test_the_conversation_query_count_is_fixed(client_as, project, django_assert_num_queries):
    agent = make_agent(project)
    for _ in range(5):
        make_run(project, agent, spans=1, conversation_id="c-9")
    client = client_as("viewer")
    # session, user, roles, runs with agent and project
    with django_assert_num_queries(4):
        client.get(reverse("conversation-detail", args=["c-9"]))


def test_a_conversation_id_with_slashes_still_links(client_as, project):
    run = make_run(project, conversation_id="tenant/42/thread 7")

    page = client_as("viewer").get(reverse("run-detail", args=[run.trace_id])).content.decode()
    conversation = client_as("viewer").get(
        reverse("conversation-detail", args=["tenant/42/thread 7"])
    )

    assert reverse("conversation-detail", args=["tenant/42/thread 7"]) in page
    assert conversation.context["runs"] == [run]


@pytest.mark.parametrize("person,status", [("viewer", 200), ("outsider", 403)])
def test_the_conversation_needs_the_viewer_role(client_as, project, person, status):
    make_run(project, conversation_id="c-5")

    response = client_as(person).get(reverse("conversation-detail", args=["c-5"]))

    assert response.status_code == status


def test_an_anonymous_visitor_is_sent_to_log_in(client, project):
    make_run(project, conversation_id="c-5")

    response = client.get(reverse("conversation-detail", args=["c-5"]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
