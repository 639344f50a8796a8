"""A run exported as a JSON attachment."""

import json

import pytest
from django.urls import reverse

from tests.factories import make_run

pytestmark = pytest.mark.django_db


def test_the_export_is_a_json_attachment_with_every_span(client_as, project):
    run = make_run(project, spans=3, name="refund order")
    run.spans.filter(parent_span_id__gt="").update(input="hello", attributes={"k": "v"})

    response = client_as("viewer").get(reverse("run-export", args=[run.trace_id]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.trace_id}.json"'
    data = json.loads(response.content)
    assert data["trace_id"] == run.trace_id
    assert data["name"] == "refund order"
    assert len(data["spans"]) == 3
    assert data["spans"][1]["input"] == "hello"
    assert data["spans"][1]["attributes"] == {"k": "v"}


def test_the_export_query_count_does_not_grow_with_spans(
    client_as, project, django_assert_num_queries
):
    run = make_run(project, spans=50)
    client = client_as("viewer")
    # session, user, roles, run lookup, run, spans with their agent
    with django_assert_num_queries(6):
        client.get(reverse("run-export", args=[run.trace_id]))


def test_an_outsider_cannot_export(client_as, project):
    run = make_run(project, spans=1)

    response = client_as("outsider").get(reverse("run-export", args=[run.trace_id]))

    assert response.status_code == 403
