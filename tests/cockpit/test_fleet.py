"""The fleet page: a tile per agent read from rollups, fleet totals, SLOs, budgets and alerts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from cockpit.models import AlertEvent, Budget, Slo
from tests.cockpit.rollup_rows import minute_row
from tests.factories import make_agent
from traces.models import Agent

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 14, 12, 0, 30, tzinfo=UTC)
# Session and user, the user's groups, agents, the firing alerts, one rollup read for three
# windows (last hour, last 5 minutes, today); SLO statuses (SLOs, one rollup read for the SLO
# window and the four burn windows, their firing alerts); budget statuses (budgets, agents'
# teams, one rollup read for day and month spend); pending approvals and open incidents per agent.
FLEET_QUERIES = 14


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)


def ago(**delta):
    return NOW - timedelta(**delta)


@pytest.fixture
def busy_agent(project):
    agent = make_agent(project, "support-triage", current_version="1.4.0", team="care")
    # Five runs in the last hour: four ok (100–400 ms), one failed (1 s); $0.01 each.
    minute_row(agent, ago(minutes=2), ok=2, durations=[100, 200], cost="0.02")
    minute_row(agent, ago(minutes=20), ok=2, failed=1, durations=[300, 400, 1000], cost="0.03")
    # Earlier today: counted in today's spend only.
    minute_row(agent, ago(hours=3), ok=1, durations=[99_000], cost="1.00")
    return agent


def tile_of(response, agent):
    return next(tile for tile in response.context["tiles"] if tile.agent == agent)


def test_each_agent_gets_a_tile_with_its_last_hour_from_rollups(client_as, busy_agent):
    response = client_as("viewer").get(reverse("fleet"))

    assert response.status_code == 200
    tile = tile_of(response, busy_agent)
    assert tile.hour.runs == 5
    assert tile.hour.error_rate == pytest.approx(0.2)
    assert tile.hour.success_rate == pytest.approx(0.8)
    assert tile.hour.p50 == pytest.approx(300, rel=0.01)
    assert tile.hour.p99 == pytest.approx(1000, rel=0.01)
    # The window starts on a minute boundary: 2 runs over the 5.5 minutes since 11:55.
    assert tile.runs_per_min == pytest.approx(2 / 5.5)
    assert tile.hour.cost_usd == Decimal("0.05")
    assert tile.cost_today == Decimal("1.05")
    html = response.content.decode()
    assert f'id="agent-tile-{busy_agent.pk}"' in html
    assert "20.0%" in html and "80.0%" in html
    assert 'href="/agents/support-triage/"' in html


def test_the_fleet_totals_add_up_every_agent(client_as, project, busy_agent):
    other = make_agent(project, "refunds")
    minute_row(other, ago(minutes=1), ok=3, durations=[500, 500, 500], cost="0.30")

    response = client_as("viewer").get(reverse("fleet"))

    totals = response.context["totals"]
    assert totals.hour.runs == 8
    assert totals.hour.error_runs == 1
    assert totals.hour.cost_usd == Decimal("0.35")
    assert totals.cost_today == Decimal("1.35")
    assert response.context["agents_live"] == 2


def test_an_agent_without_recent_traffic_is_shown_idle_with_its_state(client_as, project):
    agent = make_agent(project, "night-batch", state=Agent.State.PAUSED, state_reason="budget")

    response = client_as("viewer").get(reverse("fleet"))

    assert tile_of(response, agent).hour.runs == 0
    html = response.content.decode()
    assert "night-batch" in html
    assert '<span class="badge paused" title="budget">paused</span>' in html
    assert "state-paused idle" in html


def test_a_tile_shows_burn_against_the_daily_budget(client_as, project, busy_agent):
    Budget.objects.create(
        project=project, scope="agent", agent=busy_agent, daily_usd=Decimal("2.00")
    )

    response = client_as("viewer").get(reverse("fleet"))

    tile = tile_of(response, busy_agent)
    assert tile.daily_budget.cap == Decimal("2.00")
    assert "of $2.00 today" in response.content.decode()
    assert 'aria-label="Daily budget used"' in response.content.decode()


def test_a_tile_shows_the_slo_with_the_least_error_budget_left(client_as, busy_agent):
    Slo.objects.create(agent=busy_agent, kind=Slo.Kind.SUCCESS_RATE, target=0.99)

    response = client_as("viewer").get(reverse("fleet"))

    badge = tile_of(response, busy_agent).slo
    assert badge is not None
    assert badge.status.slo.kind == Slo.Kind.SUCCESS_RATE
    assert "error budget left" in response.content.decode()


def test_alerts_firing_now_are_listed_and_resolved_ones_are_not(client_as, project, busy_agent):
    AlertEvent.objects.create(
        kind=AlertEvent.Kind.SLO_FAST_BURN,
        severity=AlertEvent.Severity.PAGE,
        key="slo:1:fast",
        project=project,
        agent=busy_agent,
        summary="support-triage is burning its error budget at 20×",
        opened_at=ago(minutes=4),
    )
    AlertEvent.objects.create(
        kind=AlertEvent.Kind.BUDGET_WARN,
        key="budget:1:daily:warn",
        project=project,
        summary="an old warning",
        opened_at=ago(hours=2),
        resolved_at=ago(hours=1),
    )

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "burning its error budget at 20×" in html
    assert "an old warning" not in html
    assert "1 alert" in html


def test_pending_approvals_and_open_incidents_have_a_labelled_slot(client_as, busy_agent):
    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "Approvals <strong" in html and "Incidents <strong" in html


def test_the_page_is_live_and_polls_only_while_the_socket_is_down(client_as, busy_agent):
    client = client_as("viewer")
    page = client.get(reverse("fleet")).content.decode()
    fragment = client.get(reverse("fleet"), headers={"HX-Request": "true"})

    assert 'ws-connect="/ws/live/fleet/"' in page
    assert "live-refresh, every 10s[document.body.dataset.live!=='on']" in page
    assert 'class="live-status"' in page
    body = fragment.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="fleet-live"')
    assert "support-triage" in body
    assert "HX-Request" in fragment["Vary"]


def test_an_empty_fleet_explains_how_to_send_traces(client_as):
    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "No agents have reported yet" in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://testserver" in html


def test_the_query_count_does_not_grow_with_the_fleet(
    client_as, project, busy_agent, django_assert_num_queries
):
    Budget.objects.create(project=project, scope="project", daily_usd=10, monthly_usd=100)
    Slo.objects.create(agent=busy_agent, kind=Slo.Kind.SUCCESS_RATE, target=0.99)
    client = client_as("viewer")
    client.get(reverse("fleet"))  # warm the session
    with django_assert_num_queries(FLEET_QUERIES):
        client.get(reverse("fleet"))
    for n in range(5):
        agent = make_agent(project, f"agent-{n}")
        minute_row(agent, ago(minutes=n + 1), ok=1, cost="0.01")
        Slo.objects.create(agent=agent, kind=Slo.Kind.SUCCESS_RATE, target=0.99)
    with django_assert_num_queries(FLEET_QUERIES):
        client.get(reverse("fleet"))


def test_each_tile_counts_the_agents_pending_approvals_and_open_incidents(
    client_as, project, busy_agent, people
):
    from approvals.engine import do_cancel
    from incidents.actions import do_open_incident
    from tests.approvals.builders import ask

    asked = [ask(project, agent=busy_agent.name) for _ in range(3)]
    do_cancel(asked[0])
    do_open_incident(project=project, title="Refunds doubled", severity=2,
                     user=people["commander"], agents=[busy_agent])  # fmt: skip

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    tile = html[html.index(f'id="agent-tile-{busy_agent.pk}"') :]
    assert 'Approvals <strong class="warn">2</strong>' in tile
    assert 'Incidents <strong class="error">1</strong>' in tile


def test_agent_supplied_names_are_escaped(client_as, project):
    agent = make_agent(
        project, "<script>alert(1)</script>", current_version='"><img src=x onerror=alert(1)>'
    )
    minute_row(agent, ago(minutes=1), ok=1)

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html


def test_a_javascript_agent_name_never_becomes_a_link_target(client_as, project):
    minute_row(make_agent(project, "javascript:alert(1)"), ago(minutes=1), ok=1)

    html = client_as("viewer").get(reverse("fleet")).content.decode()

    assert 'href="javascript:' not in html
    assert 'href="/agents/javascript:alert(1)/"' in html


def test_people_without_a_role_see_nothing(client_as, busy_agent):
    assert client_as("outsider").get(reverse("fleet")).status_code == 403
