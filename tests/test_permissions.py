"""Who may reach what: every person against every page and action.

To cover a new page, add an Endpoint (or a WrongMethod) below; each person is checked against it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import reverse

from cockpit import roles
from tests.factories import make_agent, make_run
from traces.models import IngestKey, Span

pytestmark = pytest.mark.django_db

PEOPLE = ["anonymous", "outsider", "viewer", "operator", "reviewer", "commander", "admin"]

# The people holding each role (tests/conftest.py gives each named person their role).
HOLDERS = {
    roles.VIEWER: {"viewer", "operator", "reviewer", "commander", "admin"},
    roles.OPERATOR: {"operator", "admin"},
    roles.REVIEWER: {"reviewer", "admin"},
    roles.COMMANDER: {"commander", "admin"},
    roles.ADMIN: {"admin"},
}


@dataclass
class World:
    """The objects the URLs point at, made fresh for every test."""

    project_name: str
    trace_id: str
    key_pk: int


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    url: Callable[[World], str]
    role: str
    allowed: int  # the status a person holding the role gets
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WrongMethod:
    id: str
    method: str
    url: Callable[[World], str]


ENDPOINTS = [
    Endpoint("fleet", "get", lambda w: reverse("fleet"), roles.VIEWER, 200),
    Endpoint("runs", "get", lambda w: reverse("run-list"), roles.VIEWER, 200),
    Endpoint("run", "get", lambda w: reverse("run-detail", args=[w.trace_id]), roles.VIEWER, 200),
    Endpoint("projects", "get", lambda w: reverse("project-list"), roles.ADMIN, 200),
    Endpoint(
        "project-create",
        "post",
        lambda w: reverse("project-list"),
        roles.ADMIN,
        302,
        {"name": "new-project"},
    ),
    Endpoint(
        "key-create",
        "post",
        lambda w: reverse("key-create", args=[w.project_name]),
        roles.ADMIN,
        200,
        {"label": "ci"},
    ),
    Endpoint(
        "key-revoke-confirm",
        "get",
        lambda w: reverse("key-revoke", args=[w.key_pk]),
        roles.ADMIN,
        200,
    ),
    Endpoint(
        "key-revoke", "post", lambda w: reverse("key-revoke", args=[w.key_pk]), roles.ADMIN, 302
    ),
    Endpoint("prices", "get", lambda w: reverse("price-list"), roles.ADMIN, 200),
    Endpoint(
        "price-add",
        "post",
        lambda w: reverse("price-list"),
        roles.ADMIN,
        302,
        {"project": "acme", "model": "m", "input_per_mtok": "1", "output_per_mtok": "2"},
    ),
    Endpoint(
        "agent-intervene",
        "post",
        lambda w: reverse("agent-intervene", args=["support-triage"]),
        roles.OPERATOR,
        302,
        {"action": "pause", "reason": "permission matrix"},
    ),
    Endpoint(
        "runs-filtered",
        "get",
        lambda w: reverse("run-list"),
        roles.VIEWER,
        200,
        {"q": "refund", "has_error": "on", "sort": "-cost", "period": "24h"},
    ),
    Endpoint(
        "run-live", "get", lambda w: reverse("run-live", args=[w.trace_id]), roles.VIEWER, 200
    ),
    Endpoint(
        "run-rows", "get", lambda w: reverse("run-rows", args=[w.trace_id]), roles.VIEWER, 200
    ),
    Endpoint(
        "run-story", "get", lambda w: reverse("run-story", args=[w.trace_id]), roles.VIEWER, 200
    ),
    Endpoint(
        "run-export", "get", lambda w: reverse("run-export", args=[w.trace_id]), roles.VIEWER, 200
    ),
    Endpoint(
        "span-detail",
        "get",
        lambda w: reverse(
            "span-detail",
            args=[w.trace_id, Span.objects.filter(trace_id=w.trace_id).first().span_id],
        ),
        roles.VIEWER,
        200,
    ),
    Endpoint(
        "run-compare",
        "get",
        lambda w: f"{reverse('run-compare')}?a={w.trace_id}&b={w.trace_id}",
        roles.VIEWER,
        200,
    ),
    Endpoint(
        "agent", "get", lambda w: reverse("agent", args=["support-triage"]), roles.VIEWER, 200
    ),
    Endpoint(
        "agent-charts",
        "get",
        lambda w: reverse("agent-charts", args=["support-triage"]),
        roles.VIEWER,
        200,
    ),
    Endpoint("costs", "get", lambda w: reverse("costs"), roles.VIEWER, 200),
    Endpoint("costs-csv", "get", lambda w: reverse("costs-csv"), roles.VIEWER, 200),
]

WRONG_METHODS = [
    WrongMethod("fleet", "post", lambda w: reverse("fleet")),
    WrongMethod("runs", "post", lambda w: reverse("run-list")),
    WrongMethod("run", "delete", lambda w: reverse("run-detail", args=[w.trace_id])),
    WrongMethod("projects", "put", lambda w: reverse("project-list")),
    WrongMethod("key-create", "get", lambda w: reverse("key-create", args=[w.project_name])),
    WrongMethod("key-revoke", "delete", lambda w: reverse("key-revoke", args=[w.key_pk])),
    WrongMethod("prices", "patch", lambda w: reverse("price-list")),
    WrongMethod(
        "agent-intervene", "get", lambda w: reverse("agent-intervene", args=["support-triage"])
    ),
    WrongMethod("metrics", "post", lambda w: reverse("metrics")),
    WrongMethod("run-export", "post", lambda w: reverse("run-export", args=[w.trace_id])),
    WrongMethod("run-compare", "post", lambda w: reverse("run-compare")),
]


@pytest.fixture
def world(project) -> World:
    run = make_run(project, make_agent(project))
    key, _ = IngestKey.issue(project, label="matrix")
    return World(project_name=project.name, trace_id=run.trace_id, key_pk=key.pk)


@pytest.fixture
def client_for(client, people):
    def login(person: str) -> Client:
        if person != "anonymous":
            client.force_login(people[person])
        return client

    return login


def expected_status(person: str, endpoint: Endpoint) -> int:
    if person == "anonymous":
        return 302
    if person in HOLDERS[endpoint.role]:
        return endpoint.allowed
    return 403


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method}-{e.id}")
@pytest.mark.parametrize("person", PEOPLE)
def test_each_person_gets_what_their_role_allows(client_for, world, person, endpoint):
    client = client_for(person)

    response = getattr(client, endpoint.method)(endpoint.url(world), endpoint.data)

    assert response.status_code == expected_status(person, endpoint)
    if person == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("wrong", WRONG_METHODS, ids=lambda w: f"{w.method}-{w.id}")
@pytest.mark.parametrize("person", PEOPLE)
def test_a_wrong_method_is_refused_for_everyone(client_for, world, person, wrong):
    client = client_for(person)

    response = getattr(client, wrong.method)(wrong.url(world))

    assert response.status_code == 405


def test_forms_need_a_csrf_token(people, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["admin"])

    response = client.post(reverse("project-list"), {"name": "sneaky"})

    assert response.status_code == 403


def test_every_form_page_carries_a_csrf_token(client_for, world):
    client = client_for("admin")

    for url in [
        reverse("project-list"),
        reverse("key-revoke", args=[world.key_pk]),
        reverse("price-list"),
    ]:
        assert b'name="csrfmiddlewaretoken"' in client.get(url).content
