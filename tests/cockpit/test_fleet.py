from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from cockpit import views
from tests.factories import make_agent, make_run
from traces.models import Agent

pytestmark = pytest.mark.django_db

# Session, user and the user's groups, then agents, per-agent stats and fleet totals.
FLEET_QUERIES = 6


def minutes_ago(minutes):
    return timezone.now() - timedelta(minutes=minutes)


@pytest.fixture
def busy_agent(project):
    agent = make_agent(project, "support-triage", current_version="1.4.0")
    for i, duration in enumerate([100, 200, 300, 400, 1000]):
        make_run(
            project,
            agent,
            started_at=minutes_ago(5 + i),
            duration_ms=duration,
            status="error" if i == 4 else "ok",
            input_tokens=1000,
            output_tokens=200,
            cost_usd=Decimal("0.01"),
        )
    # Older than the fleet window: counted nowhere.
    make_run(project, agent, started_at=minutes_ago(90), duration_ms=99_000, status="error")
    return agent


def fleet_row(response, agent):
    return next(stats for row_agent, stats in response.context["rows"] if row_agent == agent)


def test_it_shows_each_agent_with_its_last_hour(client_as, busy_agent):
    response = client_as("viewer").get(reverse("fleet"))

    assert response.status_code == 200
    stats = fleet_row(response, busy_agent)
    assert stats.runs == 5
    assert stats.errors == 1
    assert stats.error_pct == 20
    assert stats.success_pct == 80
    assert stats.p50_ms == pytest.approx(300)
    assert stats.p95_ms == pytest.approx(880)  # interpolated between 400 and 1000
    assert stats.tokens == 6000
    assert stats.cost_usd == Decimal("0.05")
    html = response.content.decode()
    assert "support-triage" in html
    assert "20.0%" in html and "80.0%" in html
    assert 'href="/traces/?agent=support-triage"' in html


def test_the_fleet_totals_add_up_every_agent(client_as, project, busy_agent):
    other = make_agent(project, "refunds")
    make_run(project, other, started_at=minutes_ago(1), duration_ms=500, outcome="success")

    totals = client_as("viewer").get(reverse("fleet")).context["totals"]

    assert totals.runs == 6
    assert totals.errors == 1
    assert totals.p50_ms == pytest.approx(350)


def test_an_explicit_outcome_decides_success_over_status(client_as, project):
    agent = make_agent(project)
    make_run(project, agent, status="ok", outcome="failure")
    make_run(project, agent, status="error", outcome="success")
    make_run(project, agent, status="ok")
    make_run(project, agent, status="running")

    stats = fleet_row(client_as("viewer").get(reverse("fleet")), agent)

    assert stats.succeeded == 2


def test_percentiles_are_the_same_without_percentile_cont(client_as, busy_agent, monkeypatch):
    in_db = fleet_row(client_as("viewer").get(reverse("fleet")), busy_agent)
    monkeypatch.setattr(views, "percentiles_in_database", lambda: False)
    in_python = fleet_row(client_as("viewer").get(reverse("fleet")), busy_agent)

    assert (in_python.p50_ms, in_python.p95_ms) == pytest.approx((in_db.p50_ms, in_db.p95_ms))


def test_an_agent_without_recent_runs_is_listed_idle(client_as, project):
    agent = make_agent(project, "night-batch", state=Agent.State.PAUSED)

    response = client_as("viewer").get(reverse("fleet"))

    assert fleet_row(response, agent).runs == 0
    html = response.content.decode()
    assert "night-batch" in html
    assert '<span class="badge paused"' in html


def test_the_page_polls_and_htmx_gets_only_the_table(client_as, busy_agent):
    client = client_as("viewer")
    page = client.get(reverse("fleet")).content.decode()
    fragment = client.get(reverse("fleet"), headers={"HX-Request": "true"})

    assert 'hx-trigger="every 5s"' in page
    assert "<html" in page
    body = fragment.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="fleet-live"')
    assert "support-triage" in body
    assert "HX-Request" in fragment["Vary"]


def test_an_empty_fleet_explains_how_to_send_traces(client_as):
    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "No agents have reported yet" in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://testserver" in html
    assert "/v1/traces" in html
    assert 'hx-trigger="every 5s"' in html  # so the first agent shows up by itself


def test_the_query_count_does_not_grow_with_the_fleet(
    client_as, project, busy_agent, django_assert_num_queries
):
    client = client_as("viewer")
    client.get(reverse("fleet"))  # warm the session
    with django_assert_num_queries(FLEET_QUERIES):
        client.get(reverse("fleet"))
    for n in range(5):
        make_run(project, make_agent(project, f"agent-{n}"), started_at=minutes_ago(n))
    with django_assert_num_queries(FLEET_QUERIES):
        client.get(reverse("fleet"))


def test_agent_supplied_names_are_escaped(client_as, project):
    agent = make_agent(
        project, "<script>alert(1)</script>", current_version='"><img src=x onerror=alert(1)>'
    )
    make_run(project, agent)

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html
    assert "?agent=%3Cscript%3Ealert%281%29%3C/script%3E" in html


def test_a_javascript_agent_name_never_becomes_a_link_target(client_as, project):
    make_run(project, make_agent(project, "javascript:alert(1)"))

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert 'href="javascript:' not in html
    assert 'href="/traces/?agent=javascript%3Aalert%281%29"' in html


def test_percentile_interpolates_like_percentile_cont():
    assert views.percentile([], 0.5) is None
    assert views.percentile([7.0], 0.95) == 7.0
    assert views.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
