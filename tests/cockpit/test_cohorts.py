"""Cohorts: traits of runs, and scans that find a cohort degrading while its agent looks fine."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from cockpit import cohorts
from cockpit.models import AlertEvent
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


def test_traits_keep_short_attributes_and_leave_out_ids_content_and_run_columns():
    traits = cohorts.traits_of(
        {
            "app.locale": "de-DE",
            "user.tier": "pro",
            "app.beta": True,
            "app.shard": 7,
            "user.id": "user-1",
            "customer.id": "c-9",
            "request_id": "r-1",
            "gen_ai.agent.name": "support",
            "input.value": "hello",
            "cockpit.task.type": "triage",
            "app.note": "x" * 200,
            "app.weights": [1, 2],
            "app.score": 0.5,
        },
        {"deployment.environment.name": "prod", "service.namespace": "acme", "host.name": "h1"},
    )

    assert traits == {
        "app.locale": "de-DE",
        "user.tier": "pro",
        "app.beta": "true",
        "app.shard": "7",
        "service.namespace": "acme",
    }


def test_the_root_spans_attributes_win_over_the_resource():
    assert cohorts.traits_of({"app.channel": "web"}, {"app.channel": "batch"}) == {
        "app.channel": "web"
    }


def _locale(i, rng):
    return {"app.locale": "de-DE" if i % 12 == 0 else ("en-US" if i % 2 else "fr-FR")}


@pytest.fixture
def german_release(project):
    """A week of good runs, then a day in which German runs fail 40 % of the time."""
    agent = make_agent(project, "support-triage")
    now = timezone.now()
    add_runs(project, agent, 1200, start=now - timedelta(days=7, hours=23),
             spacing=timedelta(minutes=8), traits=_locale, steps=1,
             success=lambda i, rng: i % 40 != 1, version="1.8.2")  # fmt: skip
    add_runs(project, agent, 600, start=now - timedelta(hours=22),
             spacing=timedelta(minutes=2), traits=_locale, steps=1, version="1.9.0",
             success=lambda i, rng: not (i % 12 == 0 and i % 5 < 2) and i % 40 != 1,
             seed=2)  # fmt: skip
    return agent


def test_a_scan_finds_the_degrading_cohort_while_the_agent_looks_fine(german_release):
    result = cohorts.scan("trait:app.locale")

    assert [(f["agent"], f["value"], f["metric"]) for f in result["findings"]] == [
        ("support-triage", "de-DE", "success_rate")
    ]
    finding = result["findings"][0]
    assert finding["before"] > 0.95 and finding["after"] < 0.7
    assert abs(finding["aggregate_change"]) < cohorts.AGGREGATE_BOUNDS["success_rate"]
    assert finding["test"]["test"] == "two-proportion z-test"
    assert finding["test"]["p_value"] < 0.01
    trend = finding["trend"]
    assert len(trend["x"]) == len(trend["cohort"]) == len(trend["rest"]) >= 20


def test_the_scan_reads_the_standard_windows_on_a_long_history(german_release):
    now = timezone.now()

    result = cohorts.scan("trait:app.locale", now=now)

    split = timezone.datetime.fromisoformat(result["split"])
    assert timedelta(hours=23) < now - split <= timedelta(hours=25)
    assert result["runs"] == 1800 and result["cohorts"] == 3


def test_a_degradation_of_the_whole_agent_is_not_a_cohort_finding(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 600, start=now - timedelta(days=7), spacing=timedelta(minutes=15),
             traits=_locale)  # fmt: skip
    add_runs(project, agent, 300, start=now - timedelta(hours=20), spacing=timedelta(minutes=3),
             traits=_locale, steps=1, success=lambda i, rng: i % 3 != 0, seed=2)  # fmt: skip

    assert cohorts.scan("trait:app.locale")["findings"] == []


def test_a_cohort_that_got_slower_is_found_by_mann_whitney(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 600, start=now - timedelta(days=7), spacing=timedelta(minutes=15),
             traits=_locale, steps=1, duration_ms=lambda i, rng: rng.lognormvariate(7, 0.2))  # fmt: skip
    add_runs(project, agent, 600, start=now - timedelta(hours=20), spacing=timedelta(minutes=1),
             traits=_locale, steps=1, seed=2,
             duration_ms=lambda i, rng: rng.lognormvariate(8 if i % 12 == 0 else 7, 0.2))  # fmt: skip

    result = cohorts.scan("trait:app.locale", agent=agent)

    (finding,) = result["findings"]
    assert (finding["value"], finding["metric"]) == ("de-DE", "latency")
    assert finding["test"]["test"] == "Mann–Whitney U" and finding["test"]["effect"] > 0.5
    assert finding["after"] / finding["before"] > 2


def test_run_columns_are_cohort_keys_too(german_release):
    result = cohorts.scan("task_type")

    assert result["label"] == "task type" and result["findings"] == []


def test_an_unknown_key_is_refused():
    assert not cohorts.valid_key("password")
    with pytest.raises(ValueError):
        cohorts.scan("password")


def test_the_keys_offered_include_the_traits_runs_carry(german_release):
    keys = dict(cohorts.keys_for(german_release))

    assert keys["trait:app.locale"] == "app.locale"
    assert keys["task_type"] == "task type"


def test_the_background_scan_keeps_one_alert_per_degrading_cohort(german_release):
    with mock.patch("cockpit.webhooks.notify") as notify:
        first = cohorts.scan_all()
        second = cohorts.scan_all()

    alert = AlertEvent.objects.get(kind=AlertEvent.Kind.COHORT_DEGRADATION)
    assert (first["opened"], second["opened"]) == (1, 0)
    assert alert.agent == german_release
    assert "app.locale = de-DE" in alert.summary and "fell from" in alert.summary
    assert notify.call_count == 1


def test_the_cohort_alert_resolves_once_the_scan_no_longer_finds_it(german_release):
    with mock.patch("cockpit.webhooks.notify"):
        cohorts.scan_all()
        later = timezone.now() + timedelta(days=3)
        result = cohorts.scan_all(now=later)

    assert result["resolved"] == 1
    assert AlertEvent.objects.get().resolved_at == later
