"""Behaviour drift: the population stability index, and agents whose runs drift."""

import math
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from cockpit import drift
from cockpit.models import AlertEvent
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent


def test_psi_matches_the_hand_computed_value():
    # Σ (r − b) · ln(r / b) for b = 25 % × 4 and r = 10, 20, 30, 40 %:
    # 0.15·ln 2.5 + 0.05·ln 1.25 + 0.05·ln 1.2 + 0.15·ln 1.6 = 0.228217
    value = drift.psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4])

    assert value == pytest.approx(0.228217, abs=1e-6)


def test_psi_of_identical_distributions_is_zero_and_an_empty_bin_stays_finite():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0
    value = drift.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    assert math.isfinite(value) and value > 1


def test_numeric_values_are_binned_at_the_baselines_deciles():
    baseline = list(range(100))

    value, edges, before, after = drift.numeric_psi(baseline, [v + 50 for v in range(100)])

    assert edges == [10, 20, 30, 40, 50, 60, 70, 80, 90, 99]
    assert before == [0.1] * 10 + [0.0]
    # 50…149: none below 50, half beyond the baseline's maximum.
    assert after[:5] == [0.0] * 5 and after[-1] == pytest.approx(0.5)
    assert value > drift.DRIFT_ALERT


def test_discrete_values_make_fewer_wider_bins():
    edges = drift.decile_edges([2, 2, 2, 3, 3, 3, 3, 4, 4, 4])

    assert edges == [2, 3, 4]
    assert drift.shares([2, 3, 4, 4, 9], edges) == [0.0, 0.2, 0.6, 0.2]


def test_tool_mixes_are_compared_share_by_share():
    value, names, before, after = drift.categorical_psi({"a": 50, "b": 50}, {"a": 90, "b": 10})

    assert names == ["a", "b"] and before == [0.5, 0.5] and after == [0.9, 0.1]
    assert value == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))


@pytest.fixture
def drifting(project):
    """A week at two steps a run, then a day at four, with a new tool and longer answers."""
    agent = make_agent(project, "code-reviewer")
    now = timezone.now()
    add_runs(project, agent, 400, start=now - timedelta(days=7), spacing=timedelta(minutes=20),
             steps=lambda i, rng: rng.choice([1, 2, 2, 3]), tools=("get_diff", "run_linter"))  # fmt: skip
    add_runs(project, agent, 300, start=now - timedelta(hours=20), spacing=timedelta(minutes=3),
             steps=lambda i, rng: rng.choice([3, 4, 4, 5]), output_chars=900,
             tools=("get_diff", "run_linter", "post_review_comment"), seed=2)  # fmt: skip
    return agent


@pytest.mark.django_db
def test_an_agent_taking_more_steps_drifts_on_steps_tools_and_output(drifting):
    result = drift.agent_drift(drifting)

    by_key = {d.key: d for d in result.dimensions}
    assert (result.base_runs, result.recent_runs) == (400, 300)
    assert (
        by_key["steps"].level == "major"
        and by_key["steps"].mean_after > by_key["steps"].mean_before
    )
    assert by_key["tools"].psi > drift.DRIFT_ALERT
    assert "post_review_comment" in by_key["tools"].bins
    assert by_key["output"].level == "major"
    assert result.worst.psi >= by_key["steps"].psi


@pytest.mark.django_db
def test_a_steady_agent_is_stable(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 400, start=now - timedelta(days=7), spacing=timedelta(minutes=20),
             steps=lambda i, rng: rng.choice([1, 2, 2, 3]))  # fmt: skip
    add_runs(project, agent, 300, start=now - timedelta(hours=20), spacing=timedelta(minutes=3),
             steps=lambda i, rng: rng.choice([1, 2, 2, 3]), seed=2)  # fmt: skip

    result = drift.agent_drift(agent)

    assert result.level == "stable"
    assert all(d.psi < drift.MODERATE for d in result.dimensions)


@pytest.mark.django_db
def test_too_few_runs_say_so_instead_of_a_psi(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 150, start=now - timedelta(days=5), spacing=timedelta(minutes=30))
    add_runs(project, agent, 20, start=now - timedelta(hours=3), seed=2)

    result = drift.agent_drift(agent)

    assert result.too_few and result.level == "unknown"
    assert all(d.psi is None for d in result.dimensions)


@pytest.mark.django_db
def test_drift_past_the_threshold_opens_one_alert_per_dimension(drifting):
    with mock.patch("cockpit.webhooks.notify") as notify:
        first = drift.evaluate_drift()
        again = drift.evaluate_drift()

    alerts = AlertEvent.objects.filter(kind=AlertEvent.Kind.BEHAVIOUR_DRIFT)
    dimensions = {alert.details["dimension"] for alert in alerts}
    assert {"steps", "tools", "output"} <= dimensions
    assert first["opened"] == len(dimensions) and again["opened"] == 0
    assert notify.call_count == len(dimensions)
    steps = alerts.get(details__dimension="steps")
    assert steps.agent == drifting and "steps per run drifted" in steps.summary


@pytest.mark.django_db
def test_a_drift_alert_resolves_once_the_new_behaviour_is_the_baseline(drifting):
    now = timezone.now()
    with mock.patch("cockpit.webhooks.notify"):
        drift.evaluate_drift(now=now)
        # A week on, four steps a run is what the agent has done all week.
        for count, start, spacing in ((600, 1, 16), (200, 7 * 24 + 2, 6)):
            add_runs(drifting.project, drifting, count, start=now + timedelta(hours=start),
                     spacing=timedelta(minutes=spacing), output_chars=900,
                     steps=lambda i, rng: rng.choice([3, 4, 4, 5]), seed=start,
                     tools=("get_diff", "run_linter", "post_review_comment"))  # fmt: skip
        later = now + timedelta(days=8)
        drifting.last_seen_at = later
        drifting.save(update_fields=["last_seen_at"])
        result = drift.evaluate_drift(now=later)

    assert result["resolved"] >= 2
    assert not AlertEvent.objects.firing().filter(kind=AlertEvent.Kind.BEHAVIOUR_DRIFT).exists()
