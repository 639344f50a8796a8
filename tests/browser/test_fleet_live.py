"""The fleet in a real browser: a tile changes live when traffic arrives, and the pause button
on the agent page pauses the agent, which its control endpoint then reports."""

import threading
import urllib.request

from django.utils import timezone

from cockpit import rollups
from tests.cockpit.rollup_rows import minute_row
from tests.factories import make_agent
from tests.traces.payloads import agent_trace
from traces.models import Agent


def in_thread(work):
    """Run as a worker would: in a thread with no event loop (Playwright runs one here)."""
    errors = []

    def run():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def send_traces(server_url: str, key: str, count: int) -> None:
    for _ in range(count):
        body = agent_trace("support-triage").SerializeToString()
        request = urllib.request.Request(
            f"{server_url}/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def test_a_tile_changes_live_when_traffic_arrives(
    asgi_logged_in_page, asgi_live_server, project, ingest_key
):
    agent = make_agent(project, "support-triage")
    minute_row(agent, timezone.now() - timezone.timedelta(minutes=30), ok=1)
    page = asgi_logged_in_page("viewer")
    page.wait_for_function("document.body.dataset.live === 'on'")
    tile = page.locator(f"#agent-tile-{agent.pk}")
    runs_per_min = tile.locator(".tile-metrics dd").first
    assert runs_per_min.inner_text() == "0"
    page.evaluate("window.__notReloaded = true")

    in_thread(lambda: send_traces(asgi_live_server.url, ingest_key, 3))
    in_thread(rollups.fold_pass)

    page.wait_for_function(
        "id => document.querySelector('#agent-tile-' + id + ' .tile-metrics dd').innerText !== '0'",
        arg=agent.pk,
    )
    assert page.evaluate("window.__notReloaded") is True  # swapped in place, no reload
    assert page.errors == []


def test_the_pause_button_pauses_the_agent_and_the_control_endpoint_says_so(
    asgi_logged_in_page, asgi_live_server, project, ingest_key
):
    make_agent(project, "refund-agent")
    page = asgi_logged_in_page("operator")
    page.goto(f"{asgi_live_server.url}/agents/refund-agent/")
    page.wait_for_selector(".chart .main-svg")  # the charts are drawn

    page.get_by_label("Reason").first.fill("refund errors after release 2.4.0")
    page.get_by_role("button", name="Pause").click()

    page.wait_for_selector("#agent-state.badge.paused")
    assert "refund errors after release 2.4.0" in page.locator("#audit-trail").inner_text()
    assert Agent.objects.get(name="refund-agent").state == "paused"
    request = urllib.request.Request(
        f"{asgi_live_server.url}/api/v1/agents/refund-agent/control",
        headers={"Authorization": f"Bearer {ingest_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    assert '"state":"paused"' in body.replace(" ", "")
    assert "refund errors after release 2.4.0" in body
    assert page.errors == []
