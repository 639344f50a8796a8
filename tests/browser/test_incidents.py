"""Incidents in a real browser: open one from a run, see a note arrive live in a second
browser, write, publish and export the postmortem."""

import threading

from playwright.sync_api import expect

from incidents.actions import do_add_note, do_open_incident, do_star
from tests.browser.conftest import LAPTOP, log_in
from tests.factories import make_agent, make_run


def test_open_an_incident_from_a_run_and_watch_a_note_arrive_live(
    asgi_logged_in_page, asgi_live_server, browser, people, project
):
    run = make_run(project, make_agent(project, "refund-agent"), status="error", user_id="u-7")
    page = asgi_logged_in_page("commander")

    # From the run page to an open incident, carrying the run along.
    page.goto(f"{asgi_live_server.url}/traces/{run.trace_id}/")
    page.get_by_role("link", name="Open incident").click()
    expect(page.get_by_text("Opened from")).to_be_visible()
    page.get_by_label("Title").fill("Refunds sent twice")
    page.get_by_role("radio", name="SEV2").check()
    page.get_by_role("button", name="Open incident").click()
    expect(page.get_by_role("heading", name="Refunds sent twice")).to_be_visible()
    expect(page.locator("#incident-timeline")).to_contain_text(f"Opened from run {run.trace_id}")
    expect(page.locator("#traces")).to_contain_text("trigger")
    incident_url = page.url.split("#")[0]

    # A viewer watches the same incident in a browser of their own.
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(10_000)
    watcher = context.new_page()
    watcher.errors = []
    watcher.on("pageerror", lambda error: watcher.errors.append(str(error)))
    log_in(watcher, asgi_live_server.url, people["viewer"])
    watcher.goto(incident_url)
    watcher.wait_for_function("document.body.dataset.live === 'on'")
    expect(watcher.get_by_role("button", name="Add note")).to_have_count(0)

    page.get_by_label("Add a note").fill("Refund retries lack an idempotency key.")
    page.get_by_role("button", name="Add note").click()
    expect(watcher.locator("#incident-timeline")).to_contain_text(
        "Refund retries lack an idempotency key.", timeout=5_000
    )
    # The status change arrives live too, in the header.
    page.locator("#transition-note").fill("Paging payments")
    page.get_by_role("button", name="Change status").click()
    expect(watcher.locator("#incident-head .istatus").first).to_have_text("active", timeout=5_000)
    watcher.screenshot(path="/tmp/incident-watcher.png", full_page=True)
    assert not watcher.errors and not page.errors
    context.close()


def in_thread(work):
    """Run work as a view would: in a thread without Playwright's event loop, so the live
    broadcasts it sends on commit can go out."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def open_with_starred_note(project, user):
    incident = do_open_incident(project=project, title="Refunds sent twice", severity=2, user=user)
    do_star(do_add_note(incident, user=user, text="Rolled back 3.1.1"), user=user, starred=True)
    return incident


def test_write_publish_and_export_a_postmortem(
    logged_in_page, live_server, people, project, tmp_path
):
    incident = in_thread(lambda: open_with_starred_note(project, people["commander"]))
    page = logged_in_page("commander")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/postmortem/")
    editor = page.get_by_label("Postmortem in Markdown")
    assert "## Root causes and contributing factors" in editor.input_value()
    editor.fill(
        "## Summary\n\nRefunds went out **twice**.\n\n<script>window.hacked = 1</script>\n\n"
        "[runbook](javascript:alert(1))"
    )
    page.get_by_role("tab", name="Preview").click()
    expect(page.locator("#pm-preview strong")).to_have_text("twice")
    assert page.evaluate("window.hacked === undefined")
    assert page.locator("#pm-preview a[href^='javascript']").count() == 0
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#pm-status")).to_have_text("draft")
    page.get_by_role("button", name="Send for review").click()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#pm-status")).to_have_text("published")
    expect(page.locator("#pm-document")).to_contain_text("Rolled back 3.1.1")
    page.screenshot(path="/tmp/incident-postmortem.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export Markdown").click()
    path = tmp_path / "postmortem.md"
    download.value.save_as(path)
    text = path.read_text()
    assert download.value.suggested_filename == f"incident-{incident.pk}-postmortem.md"
    assert text.startswith("# Postmortem: Refunds sent twice")
    assert "Refunds went out **twice**." in text
    assert "Rolled back 3.1.1" in text
    assert not page.errors
