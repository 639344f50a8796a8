"""Failure clusters: normalised signatures, path shapes, and clusters read from run profiles."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cockpit import clusters
from cockpit.models import RunProfile, Score
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent
from traces.models import ReleaseMarker

pytestmark = pytest.mark.django_db


def test_messages_lose_numbers_ids_hex_strings_and_addresses():
    a = clusters.normalise_message(
        "order A-12345 not found in shard 7 (request 9f2c81aa) for jane@example.com"
    )
    b = clusters.normalise_message(
        "order A-777 not found in shard 31 (request 03bb1e7c) for omar@example.org"
    )

    assert a == b == "order A-<n> not found in shard <n> (request <id>) for <email>"


def test_uuids_and_decimal_amounts_are_stripped_too():
    text = clusters.normalise_message(
        "refund 1,204.50 failed for 1b4e28ba-2fa1-11d2-883f-0016d3cca427   after  3 tries"
    )

    assert text == "refund <n> failed for <id> after <n> tries"


def test_a_signature_joins_error_type_failing_span_and_message():
    signature = clusters.signature("TimeoutError", "execute_tool run_sql", "timed out after 30 s")

    assert signature == "TimeoutError · execute_tool run_sql · timed out after <n> s"
    assert clusters.signature("", "chat claude-3-5-haiku", "") == "Error · chat claude-3-5-haiku · "


def test_a_path_collapses_repeated_steps_so_shapes_do_not_split_on_counts():
    steps = [("llm", ""), ("tool", "search"), ("tool", "search"), ("llm", ""), ("tool", "")]

    assert clusters.path_of(steps) == "llm › tool:search+ › llm › tool:?"
    assert clusters.path_of([("llm", ""), ("tool", "search")] * 2) == (
        "llm › tool:search › llm › tool:search"
    )


@pytest.fixture
def failing(project):
    now = timezone.now()
    refunds = make_agent(project, "refund-agent")
    support = make_agent(project, "support-triage")
    messages = iter(f"order A-{n} not found in shard {n % 7} (request {n:08x})" for n in range(999))
    error = lambda i, rng: ("OrderServiceError", "execute_tool lookup_order", next(messages))  # noqa: E731
    add_runs(project, refunds, 12, start=now - timedelta(hours=5), success=False, error=error,
             version="3.1.0")  # fmt: skip
    add_runs(project, support, 3, start=now - timedelta(hours=4), success=False, error=error,
             version="1.8.2", seed=2)  # fmt: skip
    add_runs(project, support, 5, start=now - timedelta(hours=3), success=False, steps=1,
             tools=("search_kb",), seed=3)  # fmt: skip
    add_runs(project, support, 20, start=now - timedelta(hours=2), seed=4)
    return refunds, support


def test_failures_with_varying_numbers_form_one_cluster_across_agents(failing):
    now = timezone.now()

    found = clusters.failure_clusters(now - timedelta(days=1), now)

    top = found[0]
    assert top.kind == "error" and top.runs == 15
    assert top.label == (
        "OrderServiceError · execute_tool lookup_order · "
        "order A-<n> not found in shard <n> (request <id>)"
    )
    assert top.agents == {"refund-agent": 12, "support-triage": 3}
    assert top.versions == {"3.1.0", "1.8.2"}
    assert len(top.examples) == 3 and all(e["trace_id"] for e in top.examples)
    assert sum(n for _, n in top.trend) == 15
    assert top.first_seen is not None and top.last_seen > top.first_seen


def test_failures_without_an_error_cluster_by_their_path(failing):
    now = timezone.now()

    found = clusters.failure_clusters(now - timedelta(days=1), now)

    quiet = next(c for c in found if c.kind == "outcome")
    assert (quiet.runs, quiet.label) == (5, "llm › tool:search_kb")
    assert quiet.agents == {"support-triage": 5}


def test_low_scored_runs_that_succeeded_cluster_by_path(failing, project):
    _, support = failing
    profile = RunProfile.objects.filter(agent=support, failed=False).first()
    run = profile.run
    Score.objects.create(
        project=project, run=run, trace_id=run.trace_id, agent=support, version=run.version,
        run_started_at=run.started_at, name="helpfulness", kind="numeric", value_number=0.1,
    )  # fmt: skip
    now = timezone.now()

    found = clusters.failure_clusters(now - timedelta(days=1), now)

    low = next(c for c in found if c.kind == "score")
    assert low.runs == 1 and low.examples[0]["trace_id"] == run.trace_id


def test_a_cluster_first_seen_after_the_latest_release_is_flagged_new(failing):
    refunds, _ = failing
    now = timezone.now()
    ReleaseMarker.objects.create(agent=refunds, version="3.0.0", at=now - timedelta(days=9))
    ReleaseMarker.objects.create(agent=refunds, version="3.1.0", at=now - timedelta(hours=6))

    found = clusters.failure_clusters(now - timedelta(days=1), now)

    assert found[0].new_since_release == "refund-agent 3.1.0"


def test_an_agents_first_version_is_no_release_to_be_new_since(failing):
    refunds, _ = failing
    now = timezone.now()
    ReleaseMarker.objects.create(agent=refunds, version="3.1.0", at=now - timedelta(hours=6))

    found = clusters.failure_clusters(now - timedelta(days=1), now)

    assert found[0].new_since_release == ""


def test_a_cluster_seen_before_the_latest_release_is_not_new(failing):
    refunds, _ = failing
    now = timezone.now()
    ReleaseMarker.objects.create(agent=refunds, version="3.2.0", at=now - timedelta(minutes=5))

    found = clusters.failure_clusters(now - timedelta(days=1), now, agent=refunds)

    assert found[0].new_since_release == ""
    assert found[0].agents == {"refund-agent": 12}


def test_the_window_leaves_out_older_failures(failing):
    now = timezone.now()

    assert clusters.failure_clusters(now - timedelta(minutes=30), now) == []
