"""The demo fleet, through the real OpenTelemetry SDK, against a live cockpit."""

import random

import pytest
from django.core.management import call_command
from django.db.models import Q

from traces.demo import (
    PROFILES,
    SELF_HOSTED,
    Conversation,
    DemoFleet,
    RunBuilder,
    _SeededIds,
    simulate_run,
)
from traces.models import Run, Span


@pytest.fixture
def fleet_once(live_server, project, ingest_key):
    call_command(
        "demo_fleet", "--url", live_server.url, "--key", ingest_key, "--once", "--seed", "3"
    )
    return project


def test_once_stores_one_run_for_every_agent_profile(fleet_once):
    runs = Run.objects.filter(project=fleet_once).select_related("agent")

    assert sorted(run.agent.name for run in runs) == sorted(p.name for p in PROFILES)
    assert all(run.span_count > 1 for run in runs)
    assert {run.team for run in runs} == {p.team for p in PROFILES}
    assert all(run.outcome for run in runs)


def test_once_shows_several_providers_and_models(fleet_once):
    llm = Span.objects.filter(project=fleet_once, kind=Span.Kind.LLM)

    assert llm.values("provider").distinct().count() >= 3
    assert llm.values("model").distinct().count() >= 4
    # Old GenAI names (sql-analyst, sales-assistant) and OpenInference (code-reviewer) count too.
    for agent in ("sql-analyst", "sales-assistant", "code-reviewer"):
        assert llm.filter(agent__name=agent, input_tokens__gt=0, output_tokens__gt=0).exists()


def test_once_includes_errors_pii_and_a_redacted_secret(fleet_once):
    spans = Span.objects.filter(project=fleet_once)

    assert spans.filter(status=Span.Status.ERROR).exclude(error_type="").exists()
    assert spans.exclude(pii={}).exists()
    assert spans.filter(secrets_redacted__gt=0).exists()
    assert not spans.filter(Q(input__contains="sk-proj-") | Q(output__contains="sk-proj-")).exists()


def test_the_self_hosted_model_has_no_known_cost(fleet_once):
    run = Run.objects.get(project=fleet_once, agent__name="outbound-email")

    assert run.cost_known is False
    assert Span.objects.filter(run=run, model=SELF_HOSTED.request, cost_usd__isnull=True).exists()


def test_a_seed_repeats_the_same_runs():
    def generate(seed):
        rng = random.Random(seed)
        ids = _SeededIds(rng)
        runs = []
        for profile in PROFILES:
            builder = RunBuilder(profile, rng, version=profile.version)
            root = simulate_run(builder, Conversation("c", "u", "s", 1))
            runs.append((root, ids.generate_trace_id()))
        return runs

    assert generate(5) == generate(5)
    assert generate(5) != generate(6)


def test_research_assistant_is_released_midway_and_gets_slower():
    fleet = DemoFleet("http://127.0.0.1:9", "ck_unused", seed=1)
    research = next(p for p in PROFILES if p.name == "research-assistant")

    assert fleet.version_of(research) == (research.version, 1.0, 0)
    fleet.runs_sent = research.release.after_runs
    version, slowdown, extra_steps = fleet.version_of(research)
    assert version != research.version
    assert slowdown > 1.5 and extra_steps > 0
