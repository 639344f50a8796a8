"""Budgets: spend against daily and monthly caps, warnings, and the pause at 100 %."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest

from cockpit.budgets import budget_status, budget_statuses, evaluate_budgets
from cockpit.models import AlertEvent, Budget, Intervention
from tests.cockpit.rollup_rows import NOW, minute_row
from tests.factories import make_agent
from traces.models import Agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(project):
    return make_agent(project, "sales-assistant", team="sales")


def agent_budget(agent, **fields):
    return Budget.objects.create(project=agent.project, scope="agent", agent=agent, **fields)


def test_spend_today_is_measured_against_the_daily_cap(agent):
    agent_budget(agent, daily_usd=Decimal("10"), warn_percent=50)
    minute_row(agent, NOW - timedelta(hours=2), ok=3, cost="6.00")
    minute_row(agent, NOW - timedelta(days=1), ok=3, cost="99.00")  # yesterday

    (status,) = budget_status(agent, now=NOW)

    assert status.period == "daily"
    assert status.spent == Decimal("6.00")
    assert status.percent == pytest.approx(60.0)
    assert status.state == "warn"
    assert status.cap_per_hour == Decimal("10") / 24


def test_a_warning_fires_at_the_warn_percentage_and_only_once(agent):
    agent_budget(agent, daily_usd=Decimal("10"), warn_percent=80)
    minute_row(agent, NOW - timedelta(minutes=5), ok=3, cost="8.50")

    first = evaluate_budgets(now=NOW)
    second = evaluate_budgets(now=NOW + timedelta(minutes=1))

    assert first == {"opened": 1, "resolved": 0, "paused": 0}
    assert second == {"opened": 0, "resolved": 0, "paused": 0}
    warning = AlertEvent.objects.get()
    assert warning.kind == "budget_warn" and warning.agent == agent
    assert warning.details["percent"] == 85.0


def test_a_breach_pauses_the_agent_with_the_budget_as_reason(agent, people):
    budget = agent_budget(agent, daily_usd=Decimal("5"), on_breach="pause")
    minute_row(agent, NOW - timedelta(minutes=5), ok=3, cost="5.20")

    result = evaluate_budgets(now=NOW)

    assert result["paused"] == 1
    agent.refresh_from_db()
    assert agent.state == Agent.State.PAUSED
    assert "Budget breached" in agent.state_reason and "$5.00 daily cap" in agent.state_reason
    breach = AlertEvent.objects.get(kind="budget_breach")
    assert breach.budget == budget
    audit = Intervention.objects.get()
    assert (audit.action, audit.user, audit.alert_event) == ("pause", None, breach)
    assert audit.before["state"] == "active" and audit.after["state"] == "paused"


def test_a_resumed_agent_is_not_paused_again_in_the_same_breach(agent, people):
    agent_budget(agent, daily_usd=Decimal("5"), on_breach="pause")
    minute_row(agent, NOW - timedelta(minutes=5), ok=3, cost="5.20")
    evaluate_budgets(now=NOW)
    from cockpit.interventions import do_resume_agent

    do_resume_agent(agent, people["operator"], "Raising the cap with finance")
    result = evaluate_budgets(now=NOW + timedelta(minutes=1))

    assert result["paused"] == 0
    agent.refresh_from_db()
    assert agent.state == Agent.State.ACTIVE


def test_a_notify_budget_alerts_without_pausing(agent):
    agent_budget(agent, daily_usd=Decimal("5"), on_breach="notify")
    minute_row(agent, NOW - timedelta(minutes=5), ok=3, cost="7")

    with mock.patch("cockpit.webhooks.notify") as notify:
        evaluate_budgets(now=NOW)

    agent.refresh_from_db()
    assert agent.state == Agent.State.ACTIVE
    assert [call.args[0].kind for call in notify.call_args_list] == ["budget_breach"]


def test_the_breach_resolves_when_a_new_day_starts(agent):
    agent_budget(agent, daily_usd=Decimal("5"))
    minute_row(agent, NOW - timedelta(minutes=5), ok=3, cost="7")
    evaluate_budgets(now=NOW)

    tomorrow = NOW.replace(hour=0) + timedelta(days=1, minutes=1)
    result = evaluate_budgets(now=tomorrow)

    assert result["resolved"] == 1
    assert AlertEvent.objects.get().resolved_at == tomorrow


def test_a_team_budget_pauses_every_agent_of_the_team(project):
    sales = make_agent(project, "sales-assistant", team="sales")
    quotes = make_agent(project, "quote-bot", team="sales")
    support = make_agent(project, "support-triage", team="support")
    Budget.objects.create(
        project=project, scope="team", team="sales", monthly_usd=Decimal("100"), on_breach="pause"
    )
    minute_row(sales, NOW - timedelta(days=3), ok=1, cost="60")
    minute_row(quotes, NOW - timedelta(hours=1), ok=1, cost="45")
    minute_row(support, NOW - timedelta(hours=1), ok=1, cost="500")

    evaluate_budgets(now=NOW)

    states = dict(Agent.objects.values_list("name", "state"))
    assert states == {
        "sales-assistant": "paused",
        "quote-bot": "paused",
        "support-triage": "active",
    }


def test_a_project_budget_counts_every_agent_of_its_project_only(project, other_project):
    mine = make_agent(project, "a")
    theirs = make_agent(other_project, "b")
    Budget.objects.create(project=project, scope="project", daily_usd=Decimal("100"))
    minute_row(mine, NOW - timedelta(hours=1), ok=1, cost="30")
    minute_row(theirs, NOW - timedelta(hours=1), ok=1, cost="1000")

    (status,) = budget_status(mine, now=NOW)

    assert status.spent == Decimal("30")
    assert budget_status(theirs, now=NOW) == []


def test_statuses_for_a_fleet_take_a_fixed_number_of_queries(project, django_assert_num_queries):
    agents = [make_agent(project, f"agent-{i}", team="t") for i in range(5)]
    for agent in agents:
        agent_budget(agent, daily_usd=Decimal("10"), monthly_usd=Decimal("100"))
    Budget.objects.create(project=project, scope="team", team="t", daily_usd=Decimal("40"))

    # Budgets, agents, one rollup read for spend today and this month.
    with django_assert_num_queries(3):
        statuses = budget_statuses(agents, now=NOW)

    assert [len(statuses[a.pk]) for a in agents] == [3] * 5
