import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from cockpit import rollups
from tests.factories import make_agent, make_run

pytestmark = pytest.mark.browser


@pytest.fixture
def fleet(project):
    agent = make_agent(project, "support-triage", current_version="1.4.0")
    for minutes in range(1, 6):
        make_run(
            project,
            agent,
            name=f"ticket #{1000 + minutes}",
            started_at=timezone.now() - timedelta(minutes=minutes),
            status="error" if minutes == 3 else "ok",
            input_tokens=1200,
            output_tokens=150,
            user_id="customer-42",
        )
    rollups.fold_pass()  # the fleet page reads rollups
    return agent


def test_a_person_logs_in_and_sees_the_fleet(logged_in_page, fleet):
    page = logged_in_page("viewer")

    expect(page).to_have_title(re.compile("Fleet"))
    tile = page.locator(f"#agent-tile-{fleet.pk}")
    expect(tile).to_be_visible()
    expect(tile).to_contain_text("20.0%")  # one error in five runs
    expect(page.locator("#fleet-totals")).to_contain_text("Success rate")
    # The stylesheet and htmx loaded: the top bar is dark and htmx is there to poll.
    background = page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(15, 23, 42)"
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.errors == []


def test_the_fleet_table_refreshes_itself(logged_in_page, project, fleet):
    page = logged_in_page("viewer")
    expect(page.locator("#fleet-tiles")).not_to_contain_text("refunds")

    make_run(project, make_agent(project, "refunds"), name="refund order")
    rollups.fold_pass()

    # No websocket on this (WSGI) server: the page polls every 10 s instead.
    expect(page.locator("#fleet-tiles")).to_contain_text("refunds", timeout=15_000)


def test_a_person_clicks_from_the_fleet_to_a_run_and_its_spans(logged_in_page, fleet):
    page = logged_in_page("viewer")

    page.get_by_role("link", name="support-triage").click()
    expect(page).to_have_url(re.compile(r"/agents/support-triage/$"))
    page.get_by_role("link", name="all runs").click()
    expect(page).to_have_url(re.compile(r"/traces/\?agent=support-triage$"))
    expect(page.locator("#runs-table tbody tr")).to_have_count(5)
    expect(page.get_by_label("Agent")).to_have_value("support-triage")

    page.get_by_role("link", name="ticket #1001").click()
    expect(page.locator("h1")).to_have_text("ticket #1001")
    spans = page.locator(".span-rows .span-row")
    expect(spans).to_have_count(3)
    expect(spans.first).to_contain_text("invoke_agent")
    expect(spans.nth(1)).to_contain_text("step 1")
    assert page.errors == []


def test_an_admin_creates_a_key_and_sees_it_once(logged_in_page, project):
    page = logged_in_page("admin")

    page.get_by_role("link", name="Projects & keys").click()
    page.get_by_placeholder("Label, e.g. prod workers").fill("prod workers")
    page.get_by_role("button", name="Create key").click()

    key = page.locator("#new-key").inner_text()
    assert key.startswith("ck_")
    expect(page.locator("#otel-snippet")).to_contain_text(f"Bearer%20{key}")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("cell", name="prod workers")).to_be_visible()
    assert key not in page.content()
