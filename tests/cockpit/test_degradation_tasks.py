"""Degradation tasks: analyses with progress, run profiles, the beat schedule, and the demo
fleet's three scenarios found end to end by the background passes, without being told."""

import random
from collections import defaultdict
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from cockpit import clusters, degradation_tasks, regressions, run_profiles
from cockpit.celery import app
from cockpit.models import AlertEvent, Analysis, RunProfile
from tests.cockpit.degradation_data import add_runs, ingest_sim
from tests.factories import make_agent
from traces.demo import DemoFleet

pytestmark = pytest.mark.django_db


# --- Analyses ------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(project):
    agent = make_agent(project)
    now = timezone.now()
    add_runs(project, agent, 40, start=now - timedelta(days=1), version="1.0")
    add_runs(project, agent, 40, start=now - timedelta(hours=2), version="1.1", seed=2)
    return agent


def _comparison(agent):
    return degradation_tasks.start_analysis(
        Analysis.Kind.RELEASE_COMPARISON, f"{agent.pk}:1.0:1.1",
        {"agent_id": agent.pk, "a": "1.0", "b": "1.1"},
    )  # fmt: skip


def test_a_new_analysis_is_queued_for_a_worker_once_committed(
    two_versions, django_capture_on_commit_callbacks
):
    with (
        mock.patch.object(degradation_tasks.run_analysis, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        analysis = _comparison(two_versions)

    delay.assert_called_once_with(analysis.pk)
    assert analysis.status == Analysis.Status.QUEUED


def test_progress_is_written_to_the_row_the_page_polls(two_versions):
    analysis = _comparison(two_versions)

    regressions.analysis_progress(analysis)(45, "Sampling runs of 1.1")

    row = Analysis.objects.get(pk=analysis.pk)
    assert (row.progress, row.stage) == (45, "Sampling runs of 1.1")


def test_the_task_stores_the_result_and_marks_the_analysis_done(two_versions):
    analysis = _comparison(two_versions)

    assert degradation_tasks.run_analysis(analysis.pk) == "done"

    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.DONE and analysis.progress == 100
    assert analysis.result["runs"] == {"a": 40, "b": 40}
    assert analysis.finished_at is not None


def test_an_analysis_runs_once_even_when_delivered_twice(two_versions):
    analysis = _comparison(two_versions)

    assert degradation_tasks.run_analysis(analysis.pk) == "done"
    assert degradation_tasks.run_analysis(analysis.pk) == "taken"


def test_a_failed_analysis_is_not_reused(two_versions):
    analysis = _comparison(two_versions)
    Analysis.objects.filter(pk=analysis.pk).update(status=Analysis.Status.FAILED)

    assert _comparison(two_versions).pk != analysis.pk


def test_the_beat_schedule_runs_every_degradation_pass():
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert {
        "cockpit.degradation_tasks.profile_runs",
        "cockpit.degradation_tasks.roll_up_scores",
        "cockpit.degradation_tasks.check_releases",
        "cockpit.degradation_tasks.scan_cohorts",
        "cockpit.degradation_tasks.evaluate_drift",
    } <= tasks
    assert all(task in app.tasks for task in tasks if task.startswith("cockpit.degradation"))


# --- Run profiles ------------------------------------------------------------------------------


def test_the_profile_pass_profiles_runs_changed_since_its_watermark(project):
    agent = make_agent(project)
    runs = add_runs(project, agent, 5, start=timezone.now() - timedelta(minutes=10),
                    traits={"app.locale": "de-DE"}, tools=("search_kb", "lookup_order"))  # fmt: skip
    RunProfile.objects.all().delete()

    assert degradation_tasks.profile_runs() == 5
    assert degradation_tasks.profile_runs() == 0

    profile = RunProfile.objects.get(run=runs[0])
    assert profile.traits == {"app.locale": "de-DE"}
    assert profile.tools == {"search_kb": 1, "lookup_order": 1}
    assert profile.steps == 4 and profile.path == "llm › tool:search_kb › llm › tool:lookup_order"
    assert profile.failed is False and profile.signature == ""


def test_a_failed_run_is_profiled_with_the_signature_of_its_failing_step(project):
    agent = make_agent(project)
    (run,) = add_runs(project, agent, 1, start=timezone.now(), success=False,
                      error=("TimeoutError", "execute_tool run_sql", "timed out after 30 s"))  # fmt: skip

    run_profiles.profile_runs([run.pk])

    profile = RunProfile.objects.get(run=run)
    assert profile.failed and profile.error_type == "TimeoutError"
    assert profile.signature == "TimeoutError · execute_tool run_sql · timed out after <n> s"
    assert profile.signature_hash == clusters.short_hash(profile.signature)


# --- The demo fleet's scenarios, end to end ----------------------------------------------------


class QuietControls:
    def may_run(self, agent):
        return True

    def announce_release(self, agent, version, notes=""):
        return 201


WATCHED = {"support-triage", "refund-agent", "code-reviewer"}
FLEET_RUNS = 3600  # an hour of the demo at 1 run/s


def test_the_demo_fleets_degradations_are_found_without_being_told(project):
    """An hour of the demo fleet: the three agents under watch are sent through ingest (the
    other agents' runs only count towards the fleet's run number, as in the demo). Then the
    background passes run as beat would run them."""
    fleet = DemoFleet("http://127.0.0.1:9", "ck_unused", seed=7, controls=QuietControls(),
                      ask_approvals=False)  # fmt: skip
    rng = random.Random(7)
    now = timezone.now()
    start = now - timedelta(seconds=FLEET_RUNS)
    pending = defaultdict(list)
    for i in range(FLEET_RUNS):
        profile = fleet.pick_profile()
        if profile.name in WATCHED:
            version, root = fleet.simulate(profile)
            pending[(profile.name, version)].append((root, start + timedelta(seconds=i)))
        fleet.runs_sent += 1
        if i % 300 == 299 or i == FLEET_RUNS - 1:
            for (name, version), runs in pending.items():
                ingest_sim(project, version, runs, agent=name, rng=rng)
            pending.clear()

    with mock.patch("cockpit.webhooks.notify"):
        while degradation_tasks.profile_runs():
            pass
        degradation_tasks.scan_cohorts()
        degradation_tasks.evaluate_drift()

    firing = AlertEvent.objects.firing().select_related("agent")
    cohort = [a for a in firing if a.kind == AlertEvent.Kind.COHORT_DEGRADATION]
    found = {(a.agent.name, a.details["value"], a.details["metric"]) for a in cohort}
    assert ("support-triage", "de-DE", "success_rate") in found
    # Only support-triage's release degraded a cohort (its German users spread over the user
    # tiers, so a tier may show it too).
    assert {name for name, _, _ in found} == {"support-triage"}
    drifted = {(a.agent.name, a.details["dimension"]) for a in firing
               if a.kind == AlertEvent.Kind.BEHAVIOUR_DRIFT}  # fmt: skip
    assert ("code-reviewer", "steps") in drifted
    assert not any(name == "support-triage" for name, _ in drifted)
    top = clusters.failure_clusters(start, now + timedelta(minutes=1))[0]
    assert top.kind == "error" and set(top.agents) == {"refund-agent"}
    assert top.label.startswith("OrderServiceError · execute_tool lookup_order · order A-<n>")
    assert top.runs >= 20
