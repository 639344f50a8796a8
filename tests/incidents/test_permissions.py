"""Who may reach every incidents endpoint: viewers read, commanders and admins change things,
outsiders get 403, anonymous people go to the login page, and a wrong method is a 405."""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import reverse

from cockpit import roles
from incidents.actions import do_add_action_item, do_link_run, do_save_postmortem
from incidents.models import IncidentRole, TraceQuery

pytestmark = pytest.mark.django_db

PEOPLE = ["anonymous", "outsider", "viewer", "operator", "reviewer", "commander", "admin"]
HOLDERS = {
    roles.VIEWER: {"viewer", "operator", "reviewer", "commander", "admin"},
    roles.COMMANDER: {"commander", "admin"},
}


@dataclass
class World:
    incident: int
    event: int
    role: int
    link: int
    query: int
    item: int
    person: int
    trace_id: str
    project: int
    agent: int


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    url: Callable[[World], str]
    role: str
    allowed: int
    data: Callable[[World], dict] = field(default=lambda w: {})


def url(name, *keys):
    return lambda w: reverse(name, args=[getattr(w, key) for key in keys])


VIEWER, COMMANDER = roles.VIEWER, roles.COMMANDER
ENDPOINTS = [
    Endpoint("list", "get", url("incident-list"), VIEWER, 200),
    Endpoint("new-form", "get", url("incident-new"), COMMANDER, 200),
    Endpoint(
        "new",
        "post",
        url("incident-new"),
        COMMANDER,
        302,
        lambda w: {"title": "x", "severity": 3, "project": w.project},
    ),
    Endpoint("detail", "get", url("incident-detail", "incident"), VIEWER, 200),
    Endpoint(
        "status",
        "post",
        url("incident-status", "incident"),
        COMMANDER,
        302,
        lambda w: {"status": "active", "note": "on it"},
    ),
    Endpoint(
        "severity",
        "post",
        url("incident-severity", "incident"),
        COMMANDER,
        302,
        lambda w: {"severity": 2, "note": "worse"},
    ),
    Endpoint(
        "edit", "post", url("incident-edit", "incident"), COMMANDER, 302, lambda w: {"title": "y"}
    ),
    Endpoint(
        "note", "post", url("incident-note", "incident"), COMMANDER, 302, lambda w: {"text": "n"}
    ),
    Endpoint(
        "star",
        "post",
        url("incident-star", "incident", "event"),
        COMMANDER,
        302,
        lambda w: {"starred": "1"},
    ),
    Endpoint(
        "role",
        "post",
        url("incident-role", "incident"),
        COMMANDER,
        302,
        lambda w: {"role": "scribe", "person": w.person},
    ),
    Endpoint("role-end", "post", url("incident-role-end", "incident", "role"), COMMANDER, 302),
    Endpoint(
        "link",
        "post",
        url("incident-link", "incident"),
        COMMANDER,
        302,
        lambda w: {"trace_id": w.trace_id, "relation": "evidence"},
    ),
    Endpoint(
        "link-run",
        "post",
        url("incident-link-run"),
        COMMANDER,
        302,
        lambda w: {
            "incident": w.incident,
            "trace_id": w.trace_id,
            "run_project": w.project,
            "relation": "evidence",
        },
    ),
    Endpoint("unlink", "post", url("incident-unlink", "incident", "link"), COMMANDER, 302),
    Endpoint(
        "query",
        "post",
        url("incident-query", "incident"),
        COMMANDER,
        302,
        lambda w: {"agent": w.agent, "since": "2026-01-01T00:00", "relation": "affected"},
    ),
    Endpoint(
        "query-remove", "post", url("incident-query-remove", "incident", "query"), COMMANDER, 302
    ),
    Endpoint(
        "pause",
        "post",
        url("incident-pause", "incident"),
        COMMANDER,
        302,
        lambda w: {"reason": "r"},
    ),
    Endpoint(
        "freeze",
        "post",
        url("incident-freeze", "incident"),
        COMMANDER,
        302,
        lambda w: {"reason": "r"},
    ),
    Endpoint("postmortem", "get", url("incident-postmortem", "incident"), VIEWER, 200),
    Endpoint(
        "postmortem-save",
        "post",
        url("incident-postmortem-save", "incident"),
        COMMANDER,
        302,
        lambda w: {"body": "# PM"},
    ),
    Endpoint(
        "postmortem-preview",
        "post",
        url("incident-postmortem-preview", "incident"),
        COMMANDER,
        200,
        lambda w: {"body": "# PM"},
    ),
    Endpoint(
        "postmortem-status",
        "post",
        url("incident-postmortem-status", "incident"),
        COMMANDER,
        302,
        lambda w: {"status": "in_review"},
    ),
    Endpoint(
        "postmortem-export", "get", url("incident-postmortem-export", "incident"), VIEWER, 200
    ),
    Endpoint(
        "item-add",
        "post",
        url("incident-action-item-add", "incident"),
        COMMANDER,
        302,
        lambda w: {"title": "fix it", "kind": "prevent"},
    ),
    Endpoint(
        "item-status",
        "post",
        url("incident-action-item-status", "item"),
        COMMANDER,
        302,
        lambda w: {"status": "done"},
    ),
    Endpoint("items", "get", url("incident-action-items"), VIEWER, 200),
]
# Each endpoint with the method it does not take.
WRONG_METHODS = [
    (endpoint.id, "post" if endpoint.method == "get" else "get", endpoint.url)
    for endpoint in ENDPOINTS
    if endpoint.id not in ("new-form", "new")
] + [("new", "put", url("incident-new"))]


@pytest.fixture
def world(people, project, incident, run, agent):
    do_link_run(incident, run, relation="affected", user=people["commander"])
    link = incident.trace_links.get()
    query = TraceQuery.objects.create(
        incident=incident, relation="affected", agent=agent, since=run.started_at
    )
    item = do_add_action_item(incident, user=people["commander"], title="t", kind="prevent")
    do_save_postmortem(incident, user=people["commander"], body="# PM")
    role = IncidentRole.objects.get(incident=incident, role="commander")
    return World(
        incident=incident.pk,
        event=incident.events.first().pk,
        role=role.pk,
        link=link.pk,
        query=query.pk,
        item=item.pk,
        person=people["viewer"].pk,
        trace_id=run.trace_id,
        project=project.pk,
        agent=agent.pk,
    )


def client_for(name, people) -> Client:
    client = Client()
    if name != "anonymous":
        client.force_login(people[name])
    return client


@pytest.mark.parametrize("person", PEOPLE)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_each_person_gets_what_their_role_allows(endpoint, person, people, world):
    client = client_for(person, people)
    response = getattr(client, endpoint.method)(endpoint.url(world), endpoint.data(world))
    if person == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    elif person in HOLDERS[endpoint.role]:
        assert response.status_code == endpoint.allowed, response.content[:300]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize(
    ("name", "method", "make_url"), WRONG_METHODS, ids=[w[0] for w in WRONG_METHODS]
)
def test_a_wrong_method_is_refused(name, method, make_url, people, world):
    response = getattr(client_for("admin", people), method)(make_url(world))
    assert response.status_code == 405


def test_an_unknown_incident_is_a_404_for_a_viewer(client_as):
    response = client_as("viewer").get(reverse("incident-detail", args=[999999]))
    assert response.status_code == 404
