"""GET /metrics: Prometheus text exposition behind a bearer token."""

from datetime import timedelta

import pytest
from django.urls import reverse

from cockpit import metrics
from cockpit.models import AlertEvent
from tests.cockpit.rollup_rows import NOW, minute_row
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.COCKPIT_METRICS_TOKEN = TOKEN


def scrape(client, token=TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(reverse("metrics"), **headers)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_without_the_token_it_answers_401(client, token):
    response = scrape(client, token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_logged_in_admin_still_needs_the_token(client_as):
    assert scrape(client_as("admin"), None).status_code == 401


def test_with_no_token_configured_nobody_gets_in(client, settings):
    settings.COCKPIT_METRICS_TOKEN = ""

    assert scrape(client, "").status_code == 401


def test_it_exposes_per_agent_counters_and_a_duration_histogram(client, project):
    agent = make_agent(project, 'quote"bot', first_seen_at=NOW - timedelta(days=3))
    minute_row(agent, NOW - timedelta(days=2), ok=2, failed=1, durations=[300, 3000, 70_000],
               cost="1.25")  # fmt: skip
    AlertEvent.objects.create(kind="budget_warn", key="k", project=project, summary="s")

    text = metrics.exposition(now=NOW)

    who = 'project="acme",agent="quote\\"bot"'
    assert f'cockpit_agent_runs_total{{{who},outcome="success"}} 2' in text
    assert f'cockpit_agent_runs_total{{{who},outcome="failure"}} 1' in text
    assert f"cockpit_agent_error_runs_total{{{who}}} 1" in text
    assert f"cockpit_agent_cost_usd_total{{{who}}} 1.25" in text
    assert f'cockpit_agent_run_duration_seconds_bucket{{{who},le="0.5"}} 1' in text
    assert f'cockpit_agent_run_duration_seconds_bucket{{{who},le="5"}} 2' in text
    assert f'cockpit_agent_run_duration_seconds_bucket{{{who},le="+Inf"}} 3' in text
    assert f"cockpit_agent_run_duration_seconds_count{{{who}}} 3" in text
    assert f"cockpit_agent_run_duration_seconds_sum{{{who}}} 73.3" in text
    assert f'cockpit_agent_state{{{who},state="active"}} 1' in text
    assert 'cockpit_alerts_firing{kind="budget_warn"} 1' in text
    assert text.count("# TYPE cockpit_agent_run_duration_seconds histogram") == 1


def test_the_endpoint_serves_the_exposition_format(client, project, django_assert_num_queries):
    make_agent(project, "a")
    make_agent(project, "b")

    # The agents, their rollups, the firing alerts.
    with django_assert_num_queries(3):
        response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    body = response.content.decode()
    assert body.endswith("\n")
    for line in body.splitlines():
        assert line.startswith("#") or line.rsplit(" ", 1)[1].replace(".", "").isdigit(), line
