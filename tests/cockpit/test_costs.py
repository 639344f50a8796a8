"""The cost explorer: spend by dimension, day comparisons, the costliest runs, CSV export."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from cockpit import costs
from cockpit.models import Rollup
from tests.cockpit.rollup_rows import minute_row
from tests.factories import make_agent, make_run
from traces.models import Span

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 14, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)


@pytest.fixture
def fleet(project):
    triage = make_agent(project, "support-triage", team="care")
    refunds = make_agent(project, "refund-agent", team="money")
    minute_row(triage, NOW - timedelta(minutes=10), ok=8, failed=2, cost="2.00")
    minute_row(refunds, NOW - timedelta(minutes=10), ok=1, failed=1, cost="6.00")
    # Yesterday and last week, earlier in the day than now: compared like for like.
    minute_row(triage, NOW - timedelta(days=1, hours=1), ok=4, cost="1.00")
    minute_row(triage, NOW - timedelta(days=7, hours=1), ok=2, cost="0.50")
    # Yesterday after this time of day: not in "yesterday by this time".
    minute_row(triage, NOW - timedelta(hours=23), ok=1, cost="0.25")
    return triage, refunds


def test_spend_by_agent_is_read_from_rollups_costliest_first(fleet):
    rows = costs.spend_by("agent", NOW - timedelta(hours=1), NOW, now=NOW)

    assert [(row.value, row.cost_usd) for row in rows] == [
        ("refund-agent", Decimal("6.00")),
        ("support-triage", Decimal("2.00")),
    ]
    assert rows[0].share == pytest.approx(0.75)
    assert rows[0].cost_per_run == Decimal("3.00")
    assert rows[0].cost_per_success == Decimal("6.00")


def test_spend_by_a_rollup_dimension(project, fleet):
    triage, _ = fleet
    Rollup.objects.create(
        resolution="1m",
        bucket_start=(NOW - timedelta(minutes=10)).replace(second=0),
        project=project,
        agent=triage,
        dim_kind="team",
        dim_value="care",
        runs=10,
        successes=8,
        cost_usd=Decimal("2.00"),
    )

    rows = costs.spend_by("team", NOW - timedelta(hours=1), NOW, now=NOW)

    assert [(row.value, row.cost_usd) for row in rows] == [("care", Decimal("2.00"))]


def test_spend_by_user_and_conversation_comes_from_runs(project, fleet):
    triage, _ = fleet
    make_run(project, triage, user_id="ann", cost_usd=Decimal("3"), started_at=NOW)
    make_run(project, triage, user_id="ann", cost_usd=Decimal("1"), started_at=NOW)
    make_run(project, triage, user_id="bob", cost_usd=Decimal("2"), conversation_id="c1")

    users = costs.spend_by("user", NOW - timedelta(hours=1), NOW + timedelta(seconds=1), now=NOW)
    conversations = costs.spend_by("conversation", NOW - timedelta(hours=1), NOW, now=NOW)

    assert [(row.value, row.runs, row.cost_usd) for row in users] == [
        ("ann", 2, Decimal("4")),
        ("bob", 1, Decimal("2")),
    ]
    assert [row.value for row in conversations] == ["c1"]


def test_today_is_compared_with_yesterday_and_last_week_up_to_the_same_time(fleet):
    today, yesterday, last_week = costs.day_comparisons(NOW)

    assert today.stats.cost_usd == Decimal("8.00")
    assert yesterday.stats.cost_usd == Decimal("1.00")
    assert last_week.stats.cost_usd == Decimal("0.50")
    assert last_week.label == "Last Thursday"


def test_the_top_one_percent_counts_at_least_one_run_and_at_most_twenty_five():
    assert costs.top_runs_count(0) == 0
    assert costs.top_runs_count(1) == 1
    assert costs.top_runs_count(250) == 3
    assert costs.top_runs_count(1_000_000) == 25


def test_an_expensive_run_is_explained_by_retries_steps_and_model(project, fleet):
    triage, _ = fleet
    run = make_run(project, triage, spans=1, cost_usd=Decimal("4.00"), llm_calls=12)
    run.span_count = 31
    for i, status in enumerate(["error", "ok", "ok"]):
        Span.objects.create(
            project=project,
            run=run,
            agent=triage,
            trace_id=run.trace_id,
            span_id=f"ff{i:014x}",
            kind="llm",
            name="chat",
            model="gpt-4o",
            status=status,
            cost_usd=Decimal("1.2"),
            started_at=run.started_at + timedelta(seconds=i),
            ended_at=run.started_at + timedelta(seconds=i + 1),
        )

    (item,) = costs.explain_costs([run], average_cost=Decimal("0.40"))

    assert item.retries == 1
    assert item.main_model == "gpt-4o"
    assert item.times_average == pytest.approx(10)
    assert item.reasons == ["12 LLM calls in 31 steps", "1 retry", "90% on gpt-4o"]


def test_the_page_shows_totals_comparisons_forecast_and_breakdowns(client_as, project, fleet):
    make_run(project, fleet[1], cost_usd=Decimal("5.5"), started_at=NOW - timedelta(minutes=3))

    response = client_as("viewer").get(reverse("costs") + "?period=24h")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Month-end forecast" in html
    assert 'id="day-comparison"' in html
    assert 'id="spend-by-provider"' in html and 'id="spend-by-conversation"' in html
    assert '<script type="application/json" id="chart-daily-spend">' in html
    assert response.context["totals"].cost_usd == Decimal("8.25")
    assert response.context["costliest"][0].run.cost_usd == Decimal("5.5")
    assert 'href="/costs.csv?by=run&amp;period=24h"' in html


def test_the_csv_export_streams_spend_by_dimension(client_as, fleet):
    response = client_as("viewer").get(reverse("costs-csv") + "?by=agent&period=24h")

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["agent", "runs", "successes", "cost_usd"]
    assert rows[1][0] == "refund-agent"


def test_the_csv_export_of_runs_defuses_spreadsheet_formulas(client_as, project, fleet):
    make_run(project, fleet[0], user_id='=HYPERLINK("http://evil")')

    response = client_as("viewer").get(reverse("costs-csv") + "?by=run&period=24h")

    body = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK" in body
    assert "\n=HYPERLINK" not in body and ",=HYPERLINK" not in body


def test_an_unknown_csv_dimension_is_refused(client_as, fleet):
    response = client_as("viewer").get(reverse("costs-csv") + "?by=password")

    assert response.status_code == 400


def test_a_model_missing_from_recent_runs_gets_its_provider_from_genai_prices(project):
    # No span names these models: the provider comes from genai-prices' data, by model name.
    since = datetime.now(UTC) - timedelta(days=1)
    providers = costs.providers_of(["gpt-4o", "claude-sonnet-4-0", "acme-in-house-70b"], since)
    assert providers == {
        "gpt-4o": "openai",
        "claude-sonnet-4-0": "anthropic",
        "acme-in-house-70b": "",
    }
