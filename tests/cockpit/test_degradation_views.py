"""The degradation pages: roles, escaping, progress polling, and what each page shows."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cockpit.degradation_tasks import run_analysis
from cockpit.models import AlertEvent, Analysis
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent
from traces.models import ReleaseMarker

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def agent(project):
    agent = make_agent(project, "support-triage", current_version="2.0")
    now = timezone.now()
    add_runs(project, agent, 40, start=now - timedelta(days=2), version="1.0")
    add_runs(project, agent, 40, start=now - timedelta(hours=5), version="2.0", seed=2,
             success=lambda i, rng: i % 4 != 0,
             error=("ToolError", "execute_tool search_kb", f"bad {HOSTILE} 123"))  # fmt: skip
    ReleaseMarker.objects.create(agent=agent, version="1.0", at=now - timedelta(days=3))
    ReleaseMarker.objects.create(agent=agent, version="2.0", at=now - timedelta(hours=6))
    return agent


def pages(agent):
    return [
        reverse("release-comparison", args=[agent.name]),
        reverse("cohorts"),
        reverse("clusters"),
        reverse("drift"),
        reverse("pii"),
    ]


def test_every_page_sends_anonymous_visitors_to_log_in(client, agent):
    for url in pages(agent):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_every_page_refuses_people_without_a_role(client_as, agent):
    outsider = client_as("outsider")
    for url in pages(agent):
        assert outsider.get(url).status_code == 403, url


def test_every_page_answers_a_viewer_and_refuses_posts(client_as, agent):
    viewer = client_as("viewer")
    for url in pages(agent):
        assert viewer.get(url).status_code == 200, url
        assert viewer.post(url).status_code == 405, url


def test_the_release_page_compares_the_latest_release_with_the_one_before(client_as, agent):
    response = client_as("viewer").get(reverse("release-comparison", args=[agent.name]))

    analysis = Analysis.objects.get()
    assert analysis.params == {"agent_id": agent.pk, "a": "1.0", "b": "2.0"}
    body = response.content.decode()
    assert f'hx-get="{reverse("analysis", args=[analysis.pk])}"' in body
    assert "Computing release comparison" in body


def test_asking_again_reuses_the_analysis_unless_a_recompute_is_asked(client_as, agent):
    viewer = client_as("viewer")
    url = reverse("release-comparison", args=[agent.name])

    viewer.get(url)
    viewer.get(url)
    assert Analysis.objects.count() == 1
    viewer.get(url, {"fresh": "1"})
    assert Analysis.objects.count() == 2


def test_the_polled_fragment_shows_the_result_once_the_task_ran(client_as, agent):
    viewer = client_as("viewer")
    viewer.get(reverse("release-comparison", args=[agent.name]))
    analysis = Analysis.objects.get()

    run_analysis(analysis.pk)
    response = viewer.get(reverse("analysis", args=[analysis.pk]), HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert 'data-status="done"' in body and "hx-get" not in body
    assert 'data-metric="success_rate"' in body and "two-proportion z-test" in body
    assert 'data-metric="latency"' in body and "Mann–Whitney U" in body
    assert 'data-metric="tool_mix"' in body and "chi-square" in body


def test_a_failed_analysis_says_so_instead_of_polling_forever(client_as, agent):
    analysis = Analysis.objects.create(
        kind=Analysis.Kind.RELEASE_COMPARISON, key="x", params={"agent_id": 0, "a": "1", "b": "2"}
    )

    assert run_analysis(analysis.pk) == "failed"
    body = client_as("viewer").get(reverse("analysis", args=[analysis.pk])).content.decode()

    assert "This analysis failed" in body and "hx-get" not in body


def test_an_agent_with_one_version_is_told_there_is_nothing_to_compare(client_as, project):
    make_agent(project, "solo")

    response = client_as("viewer").get(reverse("release-comparison", args=["solo"]))

    assert "fewer than two versions" in response.content.decode()
    assert not Analysis.objects.exists()


def test_an_unknown_agent_is_not_found(client_as, db):
    assert (
        client_as("viewer").get(reverse("release-comparison", args=["nobody"])).status_code == 404
    )


def test_agent_sent_strings_are_escaped_on_the_release_page(client_as, project):
    agent = make_agent(project, "hostile-agent", current_version=HOSTILE)
    ReleaseMarker.objects.create(agent=agent, version="1.0", notes=HOSTILE,
                                 at=timezone.now() - timedelta(days=1))  # fmt: skip
    ReleaseMarker.objects.create(agent=agent, version=HOSTILE, at=timezone.now())

    body = (
        client_as("viewer").get(reverse("release-comparison", args=[agent.name])).content.decode()
    )

    assert HOSTILE not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_the_cohort_page_scans_the_chosen_attribute_and_refuses_unknown_ones(client_as, agent):
    viewer = client_as("viewer")

    ok = viewer.get(reverse("cohorts"), {"key": "version", "agent": agent.name})
    bad = viewer.get(reverse("cohorts"), {"key": "password"})

    assert Analysis.objects.get().params == {"agent_id": agent.pk, "key": "version"}
    assert 'option value="version" selected' in ok.content.decode()
    assert "Choose an attribute from the list." in bad.content.decode()


def test_a_cohort_result_renders_its_findings_with_trend_charts(client_as, agent):
    analysis = Analysis.objects.create(
        kind=Analysis.Kind.COHORT_SCAN, key="k", params={}, status=Analysis.Status.DONE,
        finished_at=timezone.now(),
        result={
            "key": "trait:app.locale", "label": "app.locale", "agent": "",
            "since": "2026-11-01T00:00:00+00:00", "split": "2026-11-07T00:00:00+00:00",
            "until": "2026-11-08T00:00:00+00:00", "runs": 900, "cohorts": 3, "agents": 1,
            "findings": [{
                "metric": "success_rate", "label": "success rate", "before": 0.97,
                "after": 0.6, "base_runs": 100, "recent_runs": 50, "aggregate_change": -0.02,
                "agent": "support-triage", "agent_id": agent.pk, "value": HOSTILE,
                "strength": 3.0,
                "test": {"test": "two-proportion z-test", "p_value": 0.0001, "effect": -0.9,
                         "effect_label": "Cohen's h", "statistic": -4.0,
                         "too_small": False, "reason": ""},
                "trend": {"x": ["2026-11-01T00:00:00+00:00"], "cohort": [97.0], "rest": [98.0]},
            }],
        },
    )  # fmt: skip

    body = client_as("viewer").get(reverse("analysis", args=[analysis.pk])).content.decode()

    assert "1 degrading cohort by app.locale" in body
    assert 'data-figure="cohort-trend-0"' in body and 'id="cohort-trend-0"' in body
    assert "97.0%" in body and "60.0%" in body and "-2.0 pts" in body
    assert HOSTILE not in body


def test_clusters_show_their_signature_escaped_and_an_open_incident_link(client_as, agent):
    viewer_body = client_as("viewer").get(reverse("clusters")).content.decode()
    commander_body = client_as("commander").get(reverse("clusters")).content.decode()

    assert "ToolError · execute_tool search_kb · bad &lt;script&gt;" in viewer_body
    assert HOSTILE not in viewer_body
    assert "/incidents/new/?agent=support-triage&amp;run=" in commander_body
    assert "Open incident" not in viewer_body


def test_the_drift_page_lists_agents_and_details_one(client_as, agent):
    viewer = client_as("viewer")

    fleet = viewer.get(reverse("drift")).content.decode()
    detail = viewer.get(reverse("drift"), {"agent": agent.name}).content.decode()

    assert 'data-agent="support-triage"' in fleet
    assert 'data-dimension="steps"' in detail and "too few runs to tell" in detail


def test_degradation_alerts_show_on_their_page(client_as, agent, project):
    AlertEvent.objects.create(
        kind=AlertEvent.Kind.BEHAVIOUR_DRIFT, key="drift:x", project=project, agent=agent,
        summary=f"support-triage: steps per run drifted {HOSTILE}",
    )  # fmt: skip

    body = client_as("viewer").get(reverse("drift")).content.decode()

    assert "steps per run drifted" in body and HOSTILE not in body


def test_the_agent_and_fleet_pages_link_to_the_degradation_pages(client_as, agent):
    viewer = client_as("viewer")

    agent_page = viewer.get(reverse("agent", args=[agent.name])).content.decode()
    fleet_page = viewer.get(reverse("fleet")).content.decode()

    assert reverse("release-comparison", args=[agent.name]) in agent_page
    assert f"{reverse('cohorts')}?agent=support-triage" in agent_page
    for name in ("clusters", "cohorts", "drift", "pii"):
        assert f'href="{reverse(name)}"' in fleet_page
