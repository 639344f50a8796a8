"""The incidents list: filters, the metrics by severity and class, near misses, the failure
classes ranked, and the Plotly charts built on the server."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.actions import do_transition
from incidents.metrics import summary
from incidents.models import Incident
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(open_incident, people, project):
    """Three incidents: a resolved SEV1 tool failure, an open SEV3 tool near miss, and an open
    SEV2 cost incident of another agent."""
    now = timezone.now()
    first = open_incident(
        severity=1,
        failure_class="tool",
        started_at=now - timedelta(minutes=90),
        detected_at=now - timedelta(minutes=80),
        title="Tool broke",
    )
    for status, minutes in (("active", 75), ("mitigated", 60), ("resolved", 30)):
        first = do_transition(
            first, status, user=people["commander"], note="n", at=now - timedelta(minutes=minutes)
        )
    second = open_incident(severity=3, failure_class="tool", near_miss=True, title="Caught it")
    other = make_agent(project, "sales-assistant")
    third = open_incident(severity=2, failure_class="cost", agents=[other], title="Runaway spend")
    return first, second, third


def test_medians_come_from_the_named_timestamps(history):
    stats = summary(list(Incident.objects.all()))
    assert stats["total"] == 3
    assert stats["near_misses"] == 1
    sev1 = next(row for row in stats["by_severity"] if row.label == "SEV1")
    assert sev1.medians == {"detect": 10.0, "acknowledge": 5.0, "mitigate": 30.0, "resolve": 60.0}


def test_failure_classes_are_ranked_by_how_often_they_happen(history):
    ranked = summary(list(Incident.objects.all()))["ranked"]
    assert [(r.failure_class, r.count, r.near_misses, r.worst) for r in ranked] == [
        ("tool", 2, 1, "SEV1"),
        ("cost", 1, 0, "SEV2"),
    ]


def test_the_page_lists_incidents_with_charts(client_as, history):
    response = client_as("viewer").get(reverse("incident-list"))
    body = response.content.decode()
    assert "Tool broke" in body and "Caught it" in body and "Runaway spend" in body
    assert 'data-figure="chart-incident-times"' in body
    figure = json.loads(body.split('id="chart-incident-ranked">', 1)[1].split("</script>", 1)[0])
    assert figure["data"][1]["name"] == "near misses"
    assert b"Open an incident" not in response.content


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ({"status": "open"}, {"Caught it", "Runaway spend"}),
        ({"status": "resolved"}, {"Tool broke"}),
        ({"severity": "2"}, {"Runaway spend"}),
        ({"failure_class": "tool"}, {"Tool broke", "Caught it"}),
        ({"agent": "sales-assistant"}, {"Runaway spend"}),
    ],
)
def test_filters_narrow_the_list(client_as, history, query, titles):
    response = client_as("viewer").get(reverse("incident-list"), query)
    assert {i.title for i in response.context["incidents"]} == titles


def test_the_period_leaves_older_incidents_out(client_as, history):
    Incident.objects.filter(title="Tool broke").update(
        started_at=timezone.now() - timedelta(days=40),
        detected_at=timezone.now() - timedelta(days=40),
    )
    response = client_as("viewer").get(reverse("incident-list"), {"period": "30d"})
    assert "Tool broke" not in {i.title for i in response.context["incidents"]}


def test_the_live_refresh_gets_only_the_rows(client_as, history):
    response = client_as("viewer").get(reverse("incident-list"), HTTP_HX_REQUEST="true")
    assert response.content.startswith(b'<tbody id="incident-rows"')


def test_the_list_reads_a_fixed_number_of_queries(
    client_as, history, django_assert_max_num_queries
):
    client = client_as("viewer")
    client.get(reverse("incident-list"))  # warm the session and the role cache
    with django_assert_max_num_queries(10):
        client.get(reverse("incident-list"))
