"""Release comparison: its statistics against known values, the comparison of two versions,
and the automatic check that raises "regression after release"."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from cockpit import regressions
from cockpit.models import AlertEvent, ReleaseCheck
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent
from traces.models import ReleaseMarker

# --- Statistics against hand-computed and textbook values -----------------------------------


def test_two_proportion_test_matches_the_hand_computed_z_and_p():
    # 45/100 against 60/100: pooled p = 0.525, se = sqrt(0.525 · 0.475 · 0.02) = 0.070622.
    result = regressions.two_proportions(45, 100, 60, 100)

    assert result.statistic == pytest.approx(0.15 / 0.0706222, rel=1e-5)
    assert result.statistic == pytest.approx(2.12398, abs=1e-4)
    assert result.p_value == pytest.approx(0.033672, abs=1e-5)
    # Cohen's h = 2·asin(√0.60) − 2·asin(√0.45)
    assert result.effect == pytest.approx(0.301525, abs=1e-5)
    assert not result.too_small


def test_two_proportion_test_refuses_fewer_than_thirty_per_side():
    result = regressions.two_proportions(5, 20, 10, 200)

    assert result.too_small and result.p_value is None
    assert "fewer than 30" in result.reason


def test_two_proportion_test_refuses_expected_counts_under_five():
    # One failure in 100 and two in 100: the pooled expected failures are 1.5 per side.
    result = regressions.two_proportions(99, 100, 98, 100)

    assert result.too_small and "expected counts" in result.reason


def test_mann_whitney_gives_the_exact_textbook_p_for_separated_samples():
    # Five against five with every B above every A: U = 25, exact p = 2 / C(10, 5) = 2/252.
    result = regressions.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], min_side=1)

    assert result.statistic == 25
    assert result.p_value == pytest.approx(2 / 252)
    assert result.effect == pytest.approx(1.0)


def test_mann_whitney_counts_ties_as_halves_in_u_and_the_rank_biserial():
    # A = 0..29, B = 10..39. For each B value v: a values below v, plus half a tie when
    # v < 30: U_B = (10 + … + 29) + 10·30 + 20·0.5 = 390 + 300 + 10 = 700.
    a = list(range(30))
    b = [v + 10 for v in range(30)]

    result = regressions.mann_whitney(a, b)

    assert result.statistic == 700
    assert result.effect == pytest.approx(2 * 700 / 900 - 1)
    assert result.p_value < 0.001


def test_mann_whitney_of_identical_constant_samples_finds_no_difference():
    result = regressions.mann_whitney([3.0] * 40, [3.0] * 40)

    assert (result.p_value, result.effect) == (1.0, 0.0)


def test_chi_square_of_a_two_by_two_table_matches_the_formula_and_cramers_v():
    # N(ad − bc)² / (r1 r2 c1 c2) = 60 · 300² / 30⁴ = 6.667; V = sqrt(6.667 / 60) = 1/3.
    result = regressions.chi_square_mix({"search": 10, "lookup": 20}, {"search": 20, "lookup": 10})

    assert result.statistic == pytest.approx(20 / 3)
    assert result.p_value == pytest.approx(0.0098233, abs=1e-6)
    assert result.effect == pytest.approx(1 / 3)


def test_chi_square_pools_rare_tools_and_says_when_too_few_calls_remain():
    pooled = regressions.chi_square_mix(
        {"search": 50, "lookup": 50, "rare": 1}, {"search": 50, "lookup": 50, "odd": 2}
    )
    too_few = regressions.chi_square_mix({"search": 31}, {"search": 29, "lookup": 1})

    assert not pooled.too_small and pooled.p_value > 0.1
    assert too_few.too_small


# --- Comparing two versions -------------------------------------------------------------------


@pytest.fixture
def released(project):
    """support-triage 1.0 then 2.0: 2.0 is slower, costlier and fails more often."""
    agent = make_agent(project, "support-triage", current_version="2.0")
    now = timezone.now()
    add_runs(
        project,
        agent,
        300,
        start=now - timedelta(days=2),
        version="1.0",
        duration_ms=lambda i, rng: rng.lognormvariate(7, 0.3),
        cost=lambda i, rng: round(rng.uniform(0.01, 0.02), 4),
        success=lambda i, rng: rng.random() > 0.05,
        error=("ToolError", "execute_tool search_kb", "search failed"),
        tools=("search_kb", "lookup_order"),
    )
    add_runs(
        project,
        agent,
        300,
        start=now - timedelta(hours=20),
        spacing=timedelta(seconds=20),
        version="2.0",
        duration_ms=lambda i, rng: rng.lognormvariate(7.6, 0.3),
        cost=lambda i, rng: round(rng.uniform(0.015, 0.03), 4),
        success=lambda i, rng: rng.random() > 0.25,
        error=("ToolError", "execute_tool search_kb", "search failed"),
        tools=("search_kb", "search_kb", "lookup_order"),
        steps=3,
        seed=2,
    )
    ReleaseMarker.objects.create(agent=agent, version="1.0", at=now - timedelta(days=3))
    ReleaseMarker.objects.create(agent=agent, version="2.0", at=now - timedelta(hours=21))
    return agent


def _metric(result, key):
    return next(m for m in result["metrics"] if m["key"] == key)


def test_the_comparison_finds_the_slower_costlier_failing_release_worse(released):
    result = regressions.compare_releases(released, "1.0", "2.0")

    assert result["runs"] == {"a": 300, "b": 300}
    for key in ("success_rate", "error_rate", "latency", "cost_per_run", "cost_per_success"):
        assert _metric(result, key)["direction"] == "worse", key
    assert {"success_rate", "latency", "cost_per_run"} <= set(result["regressed"])
    latency = _metric(result, "latency")
    assert latency["test"]["test"] == "Mann–Whitney U"
    assert latency["test"]["effect"] > 0.5
    assert latency["extra"]["p95"][1] > latency["extra"]["p95"][0]


def test_steps_and_the_tool_mix_are_reported_as_changed_never_as_worse(released):
    result = regressions.compare_releases(released, "1.0", "2.0")

    steps, mix = _metric(result, "steps"), _metric(result, "tool_mix")
    assert steps["direction"] == "changed" and steps["b"] > steps["a"]
    assert mix["direction"] == "changed"
    assert mix["test"]["test"] == "chi-square" and mix["test"]["effect_label"] == "Cramér's V"
    assert "steps" not in result["regressed"] and "tool_mix" not in result["regressed"]


def test_a_version_compared_with_itself_shows_no_significant_difference(project):
    agent = make_agent(project)
    now = timezone.now()
    for version, seed in (("1.0", 1), ("1.1", 2)):
        add_runs(
            project,
            agent,
            200,
            start=now - timedelta(hours=10),
            version=version,
            duration_ms=lambda i, rng: rng.lognormvariate(7, 0.3),
            seed=seed,
        )

    result = regressions.compare_releases(agent, "1.0", "1.1")

    assert result["regressed"] == []
    assert _metric(result, "latency")["direction"] == "same"


def test_a_small_sample_says_it_is_too_small_to_conclude(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 12, start=now - timedelta(hours=3), version="1.0")
    add_runs(project, agent, 8, start=now - timedelta(hours=1), version="1.1")

    result = regressions.compare_releases(agent, "1.0", "1.1")

    for metric in result["metrics"]:
        assert metric["direction"] == "unknown", metric["key"]
        assert metric["summary"].startswith("Too small a sample to conclude")


def test_the_comparison_reports_its_progress(released):
    stages = []

    regressions.compare_releases(
        released, "1.0", "2.0", progress=lambda p, stage: stages.append((p, stage))
    )

    percents = [p for p, _ in stages]
    assert percents == sorted(percents) and percents[-1] == 100 and len(stages) >= 4


def test_the_default_comparison_is_the_latest_release_against_the_one_before(released):
    assert regressions.default_versions(released) == ("1.0", "2.0")


# --- The automatic check after a release -------------------------------------------------------


def test_the_release_check_opens_one_regression_alert_and_notifies(released):
    with mock.patch("cockpit.webhooks.notify") as notify:
        first = regressions.check_releases()
        second = regressions.check_releases()

    alert = AlertEvent.objects.get(kind=AlertEvent.Kind.RELEASE_REGRESSION)
    assert (first["opened"], second["opened"]) == (1, 0)
    assert alert.agent == released and alert.is_firing
    assert "2.0 regressed against 1.0" in alert.summary and "success rate" in alert.summary
    assert notify.call_count == 1
    check = ReleaseCheck.objects.get(release__version="2.0")
    assert check.verdict == ReleaseCheck.Verdict.REGRESSED
    assert {f["metric"] for f in check.findings} >= {"success_rate", "latency"}


def test_the_release_check_waits_for_enough_runs_of_the_new_version(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 200, start=now - timedelta(days=1), version="1.0")
    add_runs(project, agent, 40, start=now - timedelta(hours=1), version="1.1")
    ReleaseMarker.objects.create(agent=agent, version="1.0", at=now - timedelta(days=2))
    ReleaseMarker.objects.create(agent=agent, version="1.1", at=now - timedelta(hours=2))

    result = regressions.check_releases(now=now)

    check = ReleaseCheck.objects.get(release__version="1.1")
    assert result["checked"] == 0
    assert (check.verdict, check.runs_new, check.runs_baseline) == ("waiting", 40, 200)
    assert not AlertEvent.objects.exists()


def test_a_clean_recheck_resolves_the_regression_alert(released):
    regressions.check_releases()
    ReleaseCheck.objects.update(final=False)

    later = timezone.now() + timedelta(minutes=5)
    with mock.patch.object(
        regressions, "compare_releases", return_value={"metrics": [], "regressed": []}
    ):
        result = regressions.check_releases(now=later)

    assert result["resolved"] == 1
    assert AlertEvent.objects.get(kind=AlertEvent.Kind.RELEASE_REGRESSION).resolved_at == later
