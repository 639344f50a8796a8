"""The agent page: charts from rollups with release markers, breakdowns, runs, controls."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from cockpit.interventions import do_pause_agent
from cockpit.models import Rollup
from tests.cockpit.rollup_rows import minute_row
from tests.factories import make_agent, make_run
from traces.models import ReleaseMarker

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 14, 12, 0, 30, tzinfo=UTC)
# Session, user, groups; agent; the summary, series and tokens-by-model rollup reads; releases
# in the window; one read for the three breakdowns; tools (the latest runs' ids, then their
# spans); two user-cohort queries; slowest runs, costliest runs and their spans; SLO statuses,
# budget statuses, alerts, releases; control, interventions.
AGENT_PAGE_QUERIES = 22


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)


@pytest.fixture
def agent(project):
    agent = make_agent(project, "refund-agent", current_version="2.4.0")
    for minutes in (5, 65, 200):
        minute_row(agent, NOW - timedelta(minutes=minutes), ok=3, failed=1, cost="0.40")
    # After the total rows: writing those rewrites every hour row of the agent.
    for minutes in (5, 65, 200):
        minute = (NOW - timedelta(minutes=minutes)).replace(second=0)
        # The model rows of the minute and of its hour, as folding and the coarse pass write
        # them (each minute here falls in an hour of its own).
        for resolution, start in (("1m", minute), ("1h", minute.replace(minute=0))):
            Rollup.objects.create(
                resolution=resolution,
                bucket_start=start,
                project=project,
                agent=agent,
                dim_kind="model",
                dim_value="<b>gpt-4o</b>",
                runs=4,
                successes=3,
                input_tokens=1000,
                output_tokens=200,
                cost_usd=Decimal("0.40"),
            )
    ReleaseMarker.objects.create(agent=agent, version="2.4.0", at=NOW - timedelta(hours=2))
    ReleaseMarker.objects.create(agent=agent, version="1.0.0", at=NOW - timedelta(days=20))
    return agent


def figure(html: str, figure_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{figure_id}">(.*?)</script>', html)
    assert match, figure_id
    return json.loads(match.group(1))


def test_the_charts_come_from_rollups_with_release_markers(client_as, agent):
    response = client_as("viewer").get(reverse("agent", args=["refund-agent"]))

    assert response.status_code == 200
    html = response.content.decode()
    throughput = figure(html, "chart-throughput")
    # 15-minute steps over 24 hours, the step now running included.
    assert sum(throughput["data"][0]["y"]) * 15 == pytest.approx(12, rel=0.01)
    assert len(throughput["data"][0]["x"]) == 97
    # Only the release inside the 24 h window is drawn.
    assert [a["text"] for a in throughput["layout"]["annotations"]] == ["2.4.0"]
    assert throughput["layout"]["shapes"][0]["yref"] == "paper"
    latency = figure(html, "chart-latency")
    assert [trace["name"] for trace in latency["data"]] == ["p50", "p95", "p99"]
    tokens = figure(html, "chart-tokens")
    # Plotly renders an HTML subset in names: agent strings are escaped.
    assert tokens["data"][0]["name"] == "&lt;b&gt;gpt-4o&lt;/b&gt;"
    assert sum(tokens["data"][0]["y"]) == 3600
    assert "<b>gpt-4o</b>" not in html


def test_the_window_switch_changes_the_charts(client_as, agent):
    html = client_as("viewer").get(reverse("agent", args=["refund-agent"]) + "?window=1h")
    throughput = figure(html.content.decode(), "chart-throughput")

    assert len(throughput["data"][0]["x"]) == 61
    assert sum(throughput["data"][0]["y"]) == pytest.approx(4)
    assert 'aria-current="true">1h<' in html.content.decode()


def test_the_live_refresh_endpoint_returns_the_same_figures(client_as, agent):
    response = client_as("viewer").get(
        reverse("agent-charts", args=["refund-agent"]) + "?window=7d"
    )

    figures = json.loads(response.content)["figures"]
    assert set(figures) == {
        "chart-throughput",
        "chart-outcomes",
        "chart-latency",
        "chart-cost",
        "chart-tokens",
    }
    assert len(figures["chart-throughput"]["data"][0]["x"]) == 169


def test_slowest_and_costliest_runs_link_to_the_trace_viewer(client_as, project, agent):
    slow = make_run(project, agent, duration_ms=90_000, started_at=NOW - timedelta(minutes=30))
    costly = make_run(project, agent, cost_usd=Decimal("9.50"), started_at=NOW - timedelta(hours=1))

    response = client_as("viewer").get(reverse("agent", args=["refund-agent"]))

    assert response.context["slowest"][0] == slow
    assert response.context["costliest"][0].run == costly
    html = response.content.decode()
    assert f'href="/traces/{slow.trace_id}/"' in html
    assert f'href="/traces/{costly.trace_id}/"' in html


def test_breakdowns_by_model_version_task_tool_and_user_cohort(client_as, project, agent):
    make_run(project, agent, user_id="u-new", started_at=NOW - timedelta(minutes=10))
    make_run(project, agent, user_id="u-old", started_at=NOW - timedelta(minutes=10))
    make_run(project, agent, user_id="u-old", started_at=NOW - timedelta(days=20))

    response = client_as("viewer").get(reverse("agent", args=["refund-agent"]))

    assert response.context["by_model"][0].value == "<b>gpt-4o</b>"
    assert response.context["by_model"][0].stats.runs == 12
    cohorts = {c["cohort"]: c["runs"] for c in response.context["cohorts"]}
    assert cohorts == {"Returning users": 1, "New users (first run < 7 d)": 1}
    assert response.context["tools"][0]["calls"] == 2  # make_run: agent, llm, tool spans x2


def test_the_tools_table_reads_only_the_latest_runs(client_as, project, agent, monkeypatch):
    monkeypatch.setattr("cockpit.views.TOOLS_RUNS", 1)
    make_run(project, agent, started_at=NOW - timedelta(minutes=20))
    make_run(project, agent, started_at=NOW - timedelta(minutes=10))

    response = client_as("viewer").get(reverse("agent", args=["refund-agent"]))

    assert response.context["tools"][0]["calls"] == 1  # the latest run's tool span only
    assert "up to 1 runs" in response.context["tools_label"]


def test_the_audit_trail_shows_who_did_what_and_why(client_as, people, agent):
    do_pause_agent(agent, people["operator"], "error spike after 2.4.0")

    html = client_as("viewer").get(reverse("agent", args=["refund-agent"])).content.decode()

    assert "error spike after 2.4.0" in html
    assert "operator" in html
    assert 'id="audit-trail"' in html


def test_operators_get_the_controls_and_viewers_do_not(client_as, agent):
    viewer_html = client_as("viewer").get(reverse("agent", args=["refund-agent"])).content.decode()
    assert 'value="pause"' not in viewer_html
    assert "need the operator role" in viewer_html

    operator_html = (
        client_as("operator").get(reverse("agent", args=["refund-agent"])).content.decode()
    )
    assert 'name="action" value="pause"' in operator_html
    assert 'name="reason" required' in operator_html
    assert 'action="/agents/refund-agent/intervene"' in operator_html


def test_the_control_part_alone_is_served_for_a_live_refresh(client_as, agent):
    response = client_as("viewer").get(
        reverse("agent", args=["refund-agent"]) + "?part=control", headers={"HX-Request": "true"}
    )

    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card flush" id="agent-control"')
    assert "<html" not in body


def test_an_unknown_agent_is_404(client_as, agent):
    assert client_as("viewer").get(reverse("agent", args=["nobody"])).status_code == 404


def test_the_query_count_is_fixed(client_as, project, agent, django_assert_num_queries):
    client = client_as("operator")
    client.get(reverse("agent", args=["refund-agent"]))
    for n in range(3):
        make_run(project, agent, user_id=f"u{n}", started_at=NOW - timedelta(minutes=n + 1))
    with django_assert_num_queries(AGENT_PAGE_QUERIES):
        client.get(reverse("agent", args=["refund-agent"]))
