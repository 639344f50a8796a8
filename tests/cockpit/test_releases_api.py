"""POST /api/v1/releases: release markers from deploy scripts, idempotent on agent + version."""

import pytest
from django.urls import reverse

from tests.factories import make_agent
from traces.models import Agent, ReleaseMarker

pytestmark = pytest.mark.django_db


def post(client, key, data):
    return client.post(
        reverse("api-releases"),
        data,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def test_a_release_is_recorded_from_the_api(client, project, ingest_key):
    agent = make_agent(project, "research-assistant")

    response = post(
        client,
        ingest_key,
        {"agent": "research-assistant", "version": "2.4.0", "model": "gpt-4o", "notes": "More RAG"},
    )

    assert response.status_code == 201
    marker = ReleaseMarker.objects.get()
    assert (marker.agent, marker.version, marker.source) == (agent, "2.4.0", "api")
    assert response.json()["notes"] == "More RAG"


def test_posting_the_same_release_again_answers_200_with_one_marker(client, project, ingest_key):
    make_agent(project, "research-assistant")
    body = {"agent": "research-assistant", "version": "2.4.0"}

    post(client, ingest_key, body)
    again = post(client, ingest_key, {**body, "prompt_version": "p7"})

    assert again.status_code == 200
    assert ReleaseMarker.objects.count() == 1
    # A blank field is filled in by the replay; nothing else changes.
    assert ReleaseMarker.objects.get().prompt_version == "p7"


def test_a_release_ingest_recorded_first_is_completed_not_duplicated(client, project, ingest_key):
    agent = make_agent(project, "research-assistant")
    ReleaseMarker.objects.create(agent=agent, version="2.4.0", source="auto")

    response = post(client, ingest_key, {"agent": "research-assistant", "version": "2.4.0",
                                         "notes": "Deployed by CI"})  # fmt: skip

    assert response.status_code == 200
    marker = ReleaseMarker.objects.get()
    assert (marker.source, marker.notes) == ("auto", "Deployed by CI")


def test_a_release_for_a_new_agent_creates_the_agent_in_the_keys_project(
    client, project, ingest_key
):
    post(client, ingest_key, {"agent": "brand-new", "version": "0.1.0"})

    assert Agent.objects.get(name="brand-new").project == project


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": "1.0"}, "agent"),
        ({"agent": "a"}, "version"),
        ({"agent": "a", "version": "   "}, "version"),
        ({"agent": "a", "version": "v" * 101}, "version"),
        ({"agent": "a", "version": "1", "model": 5 * "m" * 50}, "model"),
    ],
)
def test_bad_input_answers_400_naming_the_field(client, project, ingest_key, body, field):
    response = post(client, ingest_key, body)

    assert response.status_code == 400
    assert field in response.json()
    assert not ReleaseMarker.objects.exists()


def test_a_body_that_is_not_an_object_answers_400(client, project, ingest_key):
    response = post(client, ingest_key, ["agent", "version"])

    assert response.status_code == 400


@pytest.mark.parametrize("person", ["viewer", "admin"])
def test_people_cannot_post_releases_only_project_keys(client_as, project, person):
    response = client_as(person).post(
        reverse("api-releases"), {"agent": "a", "version": "1"}, content_type="application/json"
    )

    assert response.status_code == 403


def test_without_a_key_it_answers_401(client, project):
    response = client.post(
        reverse("api-releases"), {"agent": "a", "version": "1"}, content_type="application/json"
    )

    assert response.status_code == 401
    assert not ReleaseMarker.objects.exists()
