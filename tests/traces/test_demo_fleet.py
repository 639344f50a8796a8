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


# --- The cockpit's levers: control endpoint, releases, SLO and budget scenarios ---------------


class StubControls:
    def __init__(self, paused=()):
        self.paused = set(paused)
        self.releases = []

    def may_run(self, agent):
        return agent not in self.paused

    def announce_release(self, agent, version, notes=""):
        self.releases.append((agent, version))
        return 201


def profile_named(name):
    return next(p for p in PROFILES if p.name == name)


def test_a_paused_agent_sends_nothing_until_the_cockpit_resumes_it(
    live_server, project, ingest_key, people
):
    from cockpit.interventions import do_pause_agent, do_resume_agent
    from tests.factories import make_agent
    from traces.demo import AgentControls

    agent = make_agent(project, "sales-assistant")
    do_pause_agent(agent, people["operator"], "Budget reached")
    controls = AgentControls(live_server.url, ingest_key, ttl=0)
    fleet = DemoFleet(live_server.url, ingest_key, seed=4, controls=controls)
    sales = profile_named("sales-assistant")

    held = fleet.run_if_allowed(sales)
    do_resume_agent(agent, people["operator"], "Cap raised")
    sent = fleet.run_if_allowed(sales)
    fleet.close()

    assert held is None and fleet.runs_held == 1
    assert sent is not None and sent.agent == "sales-assistant"
    assert controls.state("support-triage") == "active"  # not seen yet: 404 reads as active


def test_the_fleet_announces_a_release_through_the_releases_api(live_server, project, ingest_key):
    from traces.demo import AgentControls
    from traces.models import ReleaseMarker

    fleet = DemoFleet(
        live_server.url, ingest_key, seed=4, controls=AgentControls(live_server.url, ingest_key)
    )
    research = profile_named("research-assistant")
    fleet.runs_sent = research.release.after_runs

    fleet.send_run(research)
    fleet.send_run(research)
    fleet.close()

    marker = ReleaseMarker.objects.get(agent__name="research-assistant")
    assert (marker.version, marker.source) == (research.release.version, "api")


def test_the_fleet_only_picks_agents_it_may_run():
    fleet = DemoFleet(
        "http://127.0.0.1:9", "ck_unused", seed=1, controls=StubControls(paused={"refund-agent"})
    )

    assert fleet.run_if_allowed(profile_named("refund-agent")) is None
    assert fleet.runs_held == 1 and fleet.runs_sent == 0


def _share_slower_than(profile, threshold_ms, *, released=False, n=600):
    rng = random.Random(11)
    version, slowdown, extra = (
        (profile.release.version, profile.release.slowdown, profile.release.extra_steps)
        if released
        else (profile.version, 1.0, 0)
    )
    durations = [
        simulate_run(
            RunBuilder(profile, rng, version=version, slowdown=slowdown),
            Conversation("c", "u", "s", 1),
            extra_steps=extra,
        ).duration_ms
        for _ in range(n)
    ]
    return sum(d > threshold_ms for d in durations) / n


def _demo_latency_slo(agent):
    from cockpit.models import Slo
    from cockpit.slo import DEMO_SLOS

    return next(o for o in DEMO_SLOS[agent] if o[0] == Slo.Kind.LATENCY_P95)


def test_sql_analyst_breaches_its_demo_latency_slo_fast_enough_to_page():
    _, threshold, target = _demo_latency_slo("sql-analyst")

    burn = _share_slower_than(profile_named("sql-analyst"), threshold) / (1 - target)

    assert burn > 14.4


def test_research_assistant_burns_its_latency_slo_only_after_its_release():
    _, threshold, target = _demo_latency_slo("research-assistant")
    research = profile_named("research-assistant")

    before = _share_slower_than(research, threshold) / (1 - target)
    after = _share_slower_than(research, threshold, released=True) / (1 - target)

    assert before < 6 < after


def test_sales_assistant_reaches_its_demo_budget_within_minutes_and_is_paused(fleet_once):
    from cockpit.budgets import DEMO_BUDGETS

    cap, on_breach = DEMO_BUDGETS["sales-assistant"]
    run = Run.objects.get(project=fleet_once, agent__name="sales-assistant")
    sales = profile_named("sales-assistant")
    share = sales.weight / sum(p.weight for p in PROFILES)

    # At the demo's default 1 run/s, how long until its runs cost the daily cap.
    seconds = float(cap) / (float(run.cost_usd) * share)

    assert on_breach == "pause"
    assert 60 < seconds < 20 * 60
