"""Incidents opened by alert episodes where an alert rule says so: one per episode, however
often or concurrently the alert is announced."""

import threading

import pytest
from django.db import connection
from django.utils import timezone

from cockpit.models import AlertEvent, Budget
from cockpit.slo import open_alert, resolve_alert
from incidents.actions import open_from_alert
from incidents.models import AutoOpenRule, Incident, Severity, Status, TimelineEvent
from tests.factories import make_agent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rule(project):
    return AutoOpenRule.objects.create(
        project=project, alert_kind=AlertEvent.Kind.SLO_FAST_BURN, severity=Severity.SEV2
    )


def fire(project, agent, kind=AlertEvent.Kind.SLO_FAST_BURN, key="slo:1:fast"):
    """Open an alert episode the way the SLO evaluator does (autocommit: receivers run)."""
    return open_alert(
        key=key,
        kind=kind,
        project=project,
        agent=agent,
        summary=f"{agent.name} burns its error budget 14x too fast",
        now=timezone.now(),
    )


def test_a_fast_burn_opens_an_incident_when_a_rule_says_so(project, agent, rule):
    event = fire(project, agent)
    incident = Incident.objects.get(alert_event=event)
    assert incident.severity == Severity.SEV2
    assert incident.status == Status.TRIAGE
    assert list(incident.agents.all()) == [agent]
    assert incident.title.startswith("SLO fast burn: refund-agent burns")
    assert incident.detected_at == event.opened_at
    assert incident.commander is None
    assert TimelineEvent.objects.filter(incident=incident, kind="alert").count() == 1


def test_without_a_rule_no_incident_opens(project, agent):
    fire(project, agent)
    assert not Incident.objects.exists()


def test_a_slow_burn_never_opens_one(project, agent, rule):
    fire(project, agent, kind=AlertEvent.Kind.SLO_SLOW_BURN, key="slo:1:slow")
    assert not Incident.objects.exists()


def test_announcing_the_same_episode_twice_opens_one_incident(project, agent, rule):
    event = fire(project, agent)
    assert open_from_alert(event) is None
    assert open_from_alert(AlertEvent.objects.get(pk=event.pk)) is None
    assert Incident.objects.filter(alert_event=event).count() == 1


def test_two_workers_racing_on_one_episode_open_one_incident(project, agent, rule):
    AutoOpenRule.objects.filter(pk=rule.pk).update(enabled=False)
    event = fire(project, agent)  # no incident yet: the rule was off
    AutoOpenRule.objects.filter(pk=rule.pk).update(enabled=True)
    results, barrier = [], threading.Barrier(2)

    def work():
        try:
            barrier.wait()
            results.append(open_from_alert(AlertEvent.objects.get(pk=event.pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Incident.objects.filter(alert_event=event).count() == 1
    assert sum(result is not None for result in results) == 1


def test_a_new_episode_after_the_last_resolved_opens_a_new_incident(project, agent, rule):
    first = fire(project, agent)
    resolve_alert(first.key, now=timezone.now())
    second = fire(project, agent)
    assert second.pk != first.pk
    assert Incident.objects.count() == 2


def test_an_agents_own_rule_wins_over_the_projects(project, agent, rule):
    AutoOpenRule.objects.create(
        project=project,
        alert_kind=AlertEvent.Kind.SLO_FAST_BURN,
        agent=agent,
        severity=Severity.SEV1,
    )
    event = fire(project, agent)
    assert Incident.objects.get(alert_event=event).severity == Severity.SEV1


def test_a_disabled_agent_rule_keeps_that_agent_out(project, agent, rule):
    AutoOpenRule.objects.create(
        project=project, alert_kind=AlertEvent.Kind.SLO_FAST_BURN, agent=agent, enabled=False
    )
    fire(project, agent)
    other = make_agent(project, "support-triage")
    fire(project, other, key="slo:2:fast")
    assert [i.agents.get() for i in Incident.objects.all()] == [other]


def test_a_budget_breach_opens_a_cost_incident(project, agent):
    AutoOpenRule.objects.create(
        project=project, alert_kind=AlertEvent.Kind.BUDGET_BREACH, severity=Severity.SEV3
    )
    budget = Budget.objects.create(project=project, scope="agent", agent=agent, daily_usd=1)
    event = open_alert(
        key="budget:1:daily:breach",
        kind=AlertEvent.Kind.BUDGET_BREACH,
        project=project,
        agent=agent,
        budget=budget,
        summary="agent refund-agent spent $1.20 of its $1.00 daily cap",
        now=timezone.now(),
    )
    incident = Incident.objects.get(alert_event=event)
    assert incident.failure_class == "cost"
    assert incident.severity == Severity.SEV3


def test_an_alert_of_an_agent_lands_on_its_open_incidents_timeline(open_incident, project, agent):
    incident = open_incident()
    event = fire(project, agent)
    line = TimelineEvent.objects.get(incident=incident, kind="alert")
    assert line.source == f"alert:{event.pk}"
    assert "burns its error budget" in line.text


def test_a_regression_after_release_opens_an_incident_when_a_rule_says_so(project, agent):
    AutoOpenRule.objects.create(
        project=project, alert_kind=AlertEvent.Kind.RELEASE_REGRESSION, severity=Severity.SEV3
    )

    event = fire(project, agent, kind=AlertEvent.Kind.RELEASE_REGRESSION, key="release:1:2")

    assert Incident.objects.get(alert_event=event).severity == Severity.SEV3
    assert fire(project, agent, kind=AlertEvent.Kind.BEHAVIOUR_DRIFT, key="drift:1") is not None
    assert Incident.objects.count() == 1  # no rule for drift: no incident
