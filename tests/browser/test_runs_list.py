"""The runs list in a real browser: filtering swaps the rows and the address; new runs arrive live."""

import threading
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from tests.factories import make_agent, make_run
from tests.traces.test_ingest_live import whole_trace
from traces.ingest import ingest_batch
from traces.models import Span
from traces.normalise import NormalisedBatch


def ingest_from_another_thread(project, spans):
    """Ingest as the receiver would, where on-commit broadcasts may run (no event loop)."""

    def store():
        with transaction.atomic():
            ingest_batch(project, NormalisedBatch(spans=spans))

    thread = threading.Thread(target=store)
    thread.start()
    thread.join()


def test_filtering_the_list_swaps_the_rows_and_the_address(
    asgi_logged_in_page, asgi_live_server, project
):
    triage = make_agent(project, "support-triage")
    refunds = make_agent(project, "refunds")
    now = timezone.now()
    for i in range(6):
        make_run(project, triage, name=f"triage run {i}", started_at=now - timedelta(minutes=i))
    parcel = make_run(project, refunds, name="refund a parcel", started_at=now, error_count=1)
    Span.objects.filter(run=parcel, name="step 1").update(input="Where is my parcel?")
    make_run(project, refunds, name="refund a charge", started_at=now)
    page = asgi_logged_in_page("viewer")

    page.goto(f"{asgi_live_server.url}/traces/")
    assert page.locator("#runs-rows tr").count() == 8
    page.select_option("#id_agent", "refunds")
    page.wait_for_url("**/traces/?*agent=refunds*")
    page.wait_for_function("document.querySelectorAll('#runs-rows tr').length === 2")

    page.fill("#id_q", "parcel")
    page.press("#id_q", "Enter")
    page.wait_for_url("**q=parcel*")
    page.wait_for_function("document.querySelectorAll('#runs-rows tr').length === 1")
    assert "refund a parcel" in page.locator("#runs-rows").inner_text()

    # The address is the view: opening it afresh shows the same rows and filters.
    page.reload()
    assert page.locator("#runs-rows tr").count() == 1
    assert page.locator("#id_q").input_value() == "parcel"
    assert page.locator("#id_agent").input_value() == "refunds"
    assert page.errors == []


def test_a_new_run_appears_live_at_the_top(asgi_logged_in_page, asgi_live_server, project):
    agent = make_agent(project, "refunds")
    for i in range(3):
        make_run(project, agent, started_at=timezone.now() - timedelta(hours=1, minutes=i))
    page = asgi_logged_in_page("viewer")
    page.goto(f"{asgi_live_server.url}/traces/")
    page.wait_for_function("document.body.dataset.live === 'on'")
    assert page.locator("#runs-rows tr").count() == 3

    spans = whole_trace(77)
    for span in spans:
        shift = timezone.now() - span.started_at
        span.started_at += shift
        span.ended_at += shift
    ingest_from_another_thread(project, spans)

    first_row = page.locator("#runs-rows tr").first
    first_row.locator("text=invoke_agent").wait_for()
    assert "fresh" in first_row.get_attribute("class")
    assert page.locator("#runs-rows tr").count() == 4
    assert page.errors == []
