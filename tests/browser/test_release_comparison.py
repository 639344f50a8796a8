"""The release comparison page in a real browser: progress while a worker computes, then the
metrics with their tests and verdicts; choosing other versions; hostile strings stay inert."""

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from cockpit import degradation_tasks
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent
from traces.models import ReleaseMarker

pytestmark = pytest.mark.browser


def slow_worker(analysis_id):
    """Stands in for a Celery worker: picks the analysis up a moment later, in its own thread,
    so the page shows its progress first."""

    def work():
        time.sleep(1.5)
        try:
            degradation_tasks.run_analysis(analysis_id)
        finally:
            connection.close()  # this thread's own connection, or the test database stays busy

    threading.Thread(target=work, daemon=True).start()


@pytest.fixture
def releases(transactional_db, project):
    agent = make_agent(project, "support-triage", current_version="2.0")
    now = timezone.now()
    add_runs(project, agent, 200, start=now - timedelta(days=2), version="1.0",
             duration_ms=lambda i, rng: rng.lognormvariate(7, 0.3),
             success=lambda i, rng: rng.random() > 0.05, tools=("search_kb", "lookup_order"),
             error=("ToolError", "execute_tool search_kb", "search failed"))  # fmt: skip
    add_runs(project, agent, 200, start=now - timedelta(hours=10), version="2.0", seed=2,
             spacing=timedelta(seconds=60), duration_ms=lambda i, rng: rng.lognormvariate(7.5, 0.3),
             success=lambda i, rng: rng.random() > 0.3, tools=("search_kb",),
             error=("ToolError", "execute_tool search_kb", "search failed"))  # fmt: skip
    add_runs(project, agent, 60, start=now - timedelta(hours=4), version="<b>2.1-rc</b>",
             seed=3)  # fmt: skip
    ReleaseMarker.objects.create(agent=agent, version="1.0", at=now - timedelta(days=3))
    ReleaseMarker.objects.create(agent=agent, version="<b>2.1-rc</b>",
                                 at=now - timedelta(hours=12))  # fmt: skip
    ReleaseMarker.objects.create(agent=agent, version="2.0", at=now - timedelta(hours=11))
    return agent


def test_the_page_shows_progress_then_the_comparison_of_the_latest_release(
    logged_in_page, live_server, releases
):
    page = logged_in_page("viewer")
    with mock.patch.object(degradation_tasks.run_analysis, "delay", side_effect=slow_worker):
        page.goto(f"{live_server.url}/agents/support-triage/releases/")

        expect(page.get_by_role("status")).to_contain_text("Computing release comparison")
        page.screenshot(path="/tmp/release_comparison_progress.png")
        table = page.locator("#comparison")
        expect(table).to_be_visible(timeout=20_000)

    expect(page.locator("#comparison h2")).to_have_text("2.0 against <b>2.1-rc</b>")
    expect(page.get_by_role("status")).to_have_count(0)
    page.screenshot(path="/tmp/release_comparison.png", full_page=True)
    assert page.errors == []


def test_choosing_two_versions_compares_them_with_tests_and_verdicts(
    logged_in_page, live_server, releases
):
    page = logged_in_page("viewer")
    with mock.patch.object(degradation_tasks.run_analysis, "delay", side_effect=slow_worker):
        page.goto(f"{live_server.url}/agents/support-triage/releases/")
        page.get_by_label("A (before)").select_option("1.0")
        page.get_by_label("B (after)").select_option("2.0")
        page.get_by_role("button", name="Compare").click()
        expect(page.locator("#comparison")).to_be_visible(timeout=20_000)

    assert "a=1.0" in page.url and "b=2.0" in page.url
    expect(page.locator("#comparison-verdict")).to_contain_text("significantly worse")
    success = page.locator('tr[data-metric="success_rate"]')
    expect(success).to_contain_text("two-proportion z-test")
    expect(success).to_contain_text("Cohen's h")
    expect(success.locator(".badge")).to_have_text("worse")
    latency = page.locator('tr[data-metric="latency"]')
    expect(latency).to_contain_text("Mann–Whitney U")
    expect(latency).to_contain_text("rank-biserial r")
    expect(page.locator('tr[data-metric="tool_mix"]')).to_contain_text("Cramér's V")
    # The charts of the last 7 days are drawn from rollups (empty here, but drawn).
    expect(
        page.locator('.chart[data-figure="release-trend-outcomes"] .main-svg').first
    ).to_be_visible()
    page.screenshot(path="/tmp/release_comparison_1_0_2_0.png", full_page=True)
    assert page.errors == []


def test_a_hostile_version_name_is_shown_as_text(logged_in_page, live_server, releases):
    page = logged_in_page("viewer")
    with mock.patch.object(degradation_tasks.run_analysis, "delay", side_effect=slow_worker):
        page.goto(
            f"{live_server.url}/agents/support-triage/releases/?a=1.0&b=%3Cb%3E2.1-rc%3C%2Fb%3E"
        )
        expect(page.locator("#comparison")).to_be_visible(timeout=20_000)

    expect(page.locator("#comparison h2")).to_have_text("<b>2.1-rc</b> against 1.0")
    assert page.locator("#comparison h2 b").count() == 0
    expect(page.locator('tr[data-metric="success_rate"] .badge')).to_have_text("too few")
