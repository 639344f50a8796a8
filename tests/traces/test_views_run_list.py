from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces.views import RUNS_PER_PAGE

pytestmark = pytest.mark.django_db

# Session, user and the user's groups, then the agent names and one page of runs.
RUN_LIST_QUERIES = 5


def minutes_ago(minutes):
    return timezone.now() - timedelta(minutes=minutes)


def listed(response):
    return [run.trace_id for run in response.context["runs"]]


def test_it_lists_runs_newest_first_with_their_numbers(client_as, project):
    agent = make_agent(project, "support-triage")
    older = make_run(project, agent, started_at=minutes_ago(30), name="refund order")
    newer = make_run(
        project,
        agent,
        started_at=minutes_ago(2),
        name="answer question",
        status="error",
        outcome="escalated",
        duration_ms=2350,
        input_tokens=1200,
        output_tokens=34,
        llm_calls=2,
        tool_calls=1,
        user_id="customer-42",
        cost_usd=Decimal("0.0421"),
    )

    response = client_as("viewer").get(reverse("run-list"))

    assert response.status_code == 200
    assert listed(response) == [newer.trace_id, older.trace_id]
    html = response.content.decode()
    assert "answer question" in html and "refund order" in html
    assert '<span class="badge error">error</span>' in html
    assert '<span class="badge escalated">escalated</span>' in html
    assert "2.35 s" in html
    assert "1,234" in html
    assert "2 / 1" in html
    assert "$0.0421" in html
    assert "customer-42" in html
    assert f'href="/traces/{newer.trace_id}/?project=acme"' in html


def test_a_run_without_a_known_cost_is_marked_unknown(client_as, project):
    make_run(project, cost_known=False)

    html = client_as("viewer").get(reverse("run-list")).content.decode()

    assert ">unknown</span>" in html


def test_it_filters_by_agent_status_and_age(client_as, project):
    triage = make_agent(project, "support-triage")
    refunds = make_agent(project, "refunds")
    recent_error = make_run(project, triage, status="error", started_at=minutes_ago(10))
    old_error = make_run(project, triage, status="error", started_at=minutes_ago(3 * 60))
    make_run(project, triage, status="ok", started_at=minutes_ago(10))
    make_run(project, refunds, status="error", started_at=minutes_ago(10))
    client = client_as("viewer")

    response = client.get(reverse("run-list"), {"agent": "support-triage", "status": "error"})
    assert listed(response) == [recent_error.trace_id, old_error.trace_id]

    response = client.get(
        reverse("run-list"), {"agent": "support-triage", "status": "error", "since": "1h"}
    )
    assert listed(response) == [recent_error.trace_id]
    assert '<option value="1h" selected>' in response.content.decode()


def test_an_unknown_agent_lists_nothing_and_says_so(client_as, project):
    make_run(project)

    response = client_as("viewer").get(reverse("run-list"), {"agent": "ghost"})

    assert listed(response) == []
    assert "No runs match these filters" in response.content.decode()


def test_malformed_filters_are_ignored(client_as, project):
    run = make_run(project)

    response = client_as("viewer").get(
        reverse("run-list"), {"status": "bogus", "since": "1y", "before": "not-a-cursor"}
    )

    assert response.status_code == 200
    assert listed(response) == [run.trace_id]


def test_it_pages_older_runs_with_a_cursor(client_as, project):
    agent = make_agent(project)
    start = minutes_ago(60)
    # Two runs share a start time, so the cursor must break the tie by id.
    runs = [make_run(project, agent, spans=1, started_at=start) for _ in range(2)]
    runs += [
        make_run(project, agent, spans=1, started_at=start + timedelta(seconds=i))
        for i in range(1, RUNS_PER_PAGE + 4)
    ]
    expected = [r.trace_id for r in sorted(runs, key=lambda r: (r.started_at, r.pk), reverse=True)]
    client = client_as("viewer")

    first = client.get(reverse("run-list"), {"agent": agent.name})
    assert listed(first) == expected[:RUNS_PER_PAGE]
    older_query = first.context["older_query"]
    assert "agent=support-triage" in older_query
    assert "Older →" in first.content.decode()

    second = client.get(f"{reverse('run-list')}?{older_query}")
    assert listed(second) == expected[RUNS_PER_PAGE:]
    assert second.context["older_query"] is None
    assert "← Newest" in second.content.decode()


def test_the_query_count_does_not_grow_with_the_page(client_as, project, django_assert_num_queries):
    client = client_as("viewer")
    client.get(reverse("run-list"))
    for n in range(4):
        make_run(project, make_agent(project, f"agent-{n}"), spans=1)
    with django_assert_num_queries(RUN_LIST_QUERIES):
        client.get(reverse("run-list"))
    for n in range(10):
        make_run(project, make_agent(project, f"agent-{n}"), spans=1)
    with django_assert_num_queries(RUN_LIST_QUERIES):
        client.get(reverse("run-list"), {"agent": "agent-1", "since": "24h"})


def test_no_runs_yet_shows_a_friendly_empty_state(client_as):
    html = client_as("viewer").get(reverse("run-list")).content.decode()

    assert "No runs yet" in html
    assert "/v1/traces" in html


def test_hostile_run_content_is_escaped(client_as, project):
    agent = make_agent(project, '"><img src=x onerror=alert(1)>')
    make_run(
        project,
        agent,
        name="<script>alert(1)</script>",
        user_id="javascript:alert(document.cookie)",
        version="<b>1</b>",
    )

    html = client_as("viewer").get(reverse("run-list")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x onerror=alert(1)>" not in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>1</b>" not in html
    assert 'href="javascript:' not in html
