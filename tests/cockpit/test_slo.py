"""SLO status and multi-window, multi-burn-rate alerts, with time frozen by passing `now`."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest

from cockpit import slo as slo_module
from cockpit.models import AlertEvent, Slo
from cockpit.slo import evaluate_slos, firing_alerts, slo_status, slo_statuses
from tests.cockpit.rollup_rows import NOW, minute_row, minutes
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

HOUR_AGO = NOW - timedelta(hours=1)


@pytest.fixture
def agent(project):
    return make_agent(project, "refund-agent")


@pytest.fixture
def success_slo(agent):
    return Slo.objects.create(agent=agent, kind=Slo.Kind.SUCCESS_RATE, target=0.99)


def firing_kinds():
    return sorted(AlertEvent.objects.firing().values_list("kind", flat=True))


def test_a_steady_twenty_percent_failure_rate_fires_both_fast_and_slow_burn(agent, success_slo):
    # 20 % bad against a 1 % budget: a burn rate of 20 in every window.
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)

    result = evaluate_slos(now=NOW)

    assert result == {"opened": 2, "resolved": 0}
    assert firing_kinds() == ["slo_fast_burn", "slo_slow_burn"]
    fast = AlertEvent.objects.get(kind="slo_fast_burn")
    assert fast.severity == "page"
    assert fast.agent == agent and fast.slo == success_slo and fast.opened_at == NOW
    assert fast.details["burn_rates"]["1h"] == pytest.approx(20.0)
    assert "refund-agent" in fast.summary


def test_a_burst_in_the_last_five_minutes_alone_does_not_page(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=55, ok=10)
    minutes(agent, start=NOW - timedelta(minutes=5), count=5, failed=10)

    evaluate_slos(now=NOW)

    # 1 h: 50 of 600 bad, a burn of 8.3, under 14.4: no page. 6 h at 8.3 and 30 min at 16.7
    # are both above 6: a ticket.
    assert firing_kinds() == ["slo_slow_burn"]


def test_a_slow_hour_long_ago_does_not_fire_once_the_recent_minutes_are_good(agent, success_slo):
    minutes(agent, start=NOW - timedelta(hours=6), count=60, failed=10)
    minutes(agent, start=HOUR_AGO, count=60, ok=10)

    evaluate_slos(now=NOW)

    assert firing_kinds() == []


def test_the_fast_burn_resolves_when_the_short_window_recovers(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)
    evaluate_slos(now=NOW)
    minutes(agent, start=NOW, count=10, ok=10)

    later = NOW + timedelta(minutes=10)
    result = evaluate_slos(now=later)

    assert result == {"opened": 0, "resolved": 1}
    fast = AlertEvent.objects.get(kind="slo_fast_burn")
    assert fast.resolved_at == later
    # 30 min: 20 minutes at 20 % bad and 10 good ones, still a burn of 13: the ticket stays.
    assert firing_kinds() == ["slo_slow_burn"]


def test_evaluating_the_same_minute_twice_keeps_one_episode(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)

    evaluate_slos(now=NOW)
    again = evaluate_slos(now=NOW + timedelta(seconds=20))

    assert again == {"opened": 0, "resolved": 0}
    assert AlertEvent.objects.filter(kind="slo_fast_burn").count() == 1


def test_a_new_burn_after_resolution_opens_a_new_episode(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)
    evaluate_slos(now=NOW)
    minutes(agent, start=NOW, count=10, ok=10)
    evaluate_slos(now=NOW + timedelta(minutes=10))
    minutes(agent, start=NOW + timedelta(minutes=10), count=5, failed=10)

    evaluate_slos(now=NOW + timedelta(minutes=15))

    episodes = AlertEvent.objects.filter(kind="slo_fast_burn").order_by("opened_at")
    assert [e.resolved_at is None for e in episodes] == [False, True]


def test_a_latency_slo_counts_runs_slower_than_its_threshold_as_bad(agent):
    Slo.objects.create(agent=agent, kind=Slo.Kind.LATENCY_P95, threshold=2000, target=0.95)
    # Half the runs take 5 s: against a 5 % budget that is a burn of 10 — slow, not fast.
    minutes(agent, start=HOUR_AGO, count=60, ok=4, durations=[800, 900, 5000, 5000])

    evaluate_slos(now=NOW)

    assert firing_kinds() == ["slo_slow_burn"]
    (status,) = slo_status(agent, now=NOW)
    assert status.burn_rate_1h == pytest.approx(10.0)
    assert status.compliance == pytest.approx(0.5)


def test_a_cost_per_success_slo_burns_at_cost_over_threshold(agent):
    Slo.objects.create(agent=agent, kind=Slo.Kind.COST_PER_SUCCESS, threshold=0.10, target=0.99)
    # 2 successes a minute costing $1.60: $0.80 a success, 8× the threshold.
    minutes(agent, start=HOUR_AGO, count=60, ok=2, cost="1.60")

    evaluate_slos(now=NOW)

    (status,) = slo_status(agent, now=NOW)
    assert status.burn_rate_1h == pytest.approx(8.0)
    assert status.compliance == pytest.approx(0.80)
    assert not status.met
    assert firing_kinds() == ["slo_slow_burn"]


def test_status_shows_compliance_and_the_error_budget_left_over_the_slo_window(agent):
    Slo.objects.create(agent=agent, kind=Slo.Kind.SUCCESS_RATE, target=0.9, window_days=7)
    # Over the week: 1000 runs, 50 failed. 5 % bad of a 10 % budget: half of it is left.
    minute_row(agent, NOW - timedelta(days=3), ok=500, failed=50)
    minute_row(agent, NOW - timedelta(days=8), failed=500)  # outside the window
    minute_row(agent, NOW - timedelta(minutes=30), ok=450)

    (status,) = slo_status(agent, now=NOW)

    assert status.compliance == pytest.approx(0.95)
    assert status.met
    assert status.error_budget_remaining == pytest.approx(0.5)
    assert status.runs == 1000
    assert status.burn_rate_1h == 0.0
    assert status.alert == ""


def test_an_agent_without_runs_keeps_its_whole_error_budget(agent, success_slo):
    (status,) = slo_status(agent, now=NOW)

    assert status.compliance is None
    assert status.met
    assert status.error_budget_remaining == 1.0


def test_status_names_the_burn_alert_firing(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)
    evaluate_slos(now=NOW)

    (status,) = slo_status(agent, now=NOW)

    assert status.alert == "slo_fast_burn"
    assert list(firing_alerts(agent=agent)) == list(
        AlertEvent.objects.firing().order_by("-opened_at", "-id")
    )


def test_statuses_for_a_whole_fleet_take_a_fixed_number_of_queries(
    project, django_assert_num_queries
):
    agents = [make_agent(project, f"agent-{i}") for i in range(6)]
    for i, agent in enumerate(agents):
        Slo.objects.create(agent=agent, kind=Slo.Kind.SUCCESS_RATE)
        Slo.objects.create(agent=agent, kind=Slo.Kind.LATENCY_P99, threshold=1000 + i)
        minute_row(agent, NOW - timedelta(minutes=3), ok=5, failed=1)

    # SLOs, one rollup read for the four burn windows and the SLO window (28 days), firing
    # alerts.
    with django_assert_num_queries(3):
        statuses = slo_statuses(agents, now=NOW)

    assert [len(statuses[a.pk]) for a in agents] == [2] * 6


def test_an_opened_alert_is_sent_to_webhooks_and_announced(agent, success_slo):
    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)

    with (
        mock.patch("cockpit.webhooks.notify") as notify,
        mock.patch("cockpit.alerting.broadcast_alerts") as broadcast,
    ):
        evaluate_slos(now=NOW)

    assert notify.call_count == 2 and broadcast.call_count == 2
    assert {call.args[0].kind for call in notify.call_args_list} == {
        "slo_fast_burn",
        "slo_slow_burn",
    }


def test_the_demo_objectives_are_created_once(project):
    slo_module.ensure_demo_objectives(project)
    slo_module.ensure_demo_objectives(project)

    assert Slo.objects.filter(agent__project=project).count() == sum(
        len(v) for v in slo_module.DEMO_SLOS.values()
    )
    assert Decimal(0) < project.budgets.get(scope="agent", agent__name="sales-assistant").daily_usd


def test_beat_runs_the_evaluation_task_every_minute(agent, success_slo):
    from cockpit.alerting import evaluate_alerts
    from cockpit.celery import app

    minutes(agent, start=HOUR_AGO, count=60, ok=8, failed=2)
    entry = app.conf.beat_schedule["evaluate-alerts"]

    with mock.patch("django.utils.timezone.now", return_value=NOW):
        result = app.tasks[entry["task"]].apply().get()

    assert entry["schedule"] == 60.0 and entry["task"] == evaluate_alerts.name
    assert result["slos"] == {"opened": 2, "resolved": 0}
    assert result["budgets"] == {"opened": 0, "resolved": 0, "paused": 0}
